"""Muon: momentum orthogonalised by Newton-Schulz, for matrix parameters."""

from __future__ import annotations

from typing import Any

import jax
from jax.typing import DTypeLike

from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._build import current_call
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx.optimizers._aliases import Alias
from gradtx.optimizers._aliases import fold
from gradtx.optimizers._aliases import folding
from gradtx.optimizers._aliases import same
from gradtx.optimizers._aliases import traced
from gradtx.optimizers._stages import descent
from gradtx.transforms._adam import adam_stages
from gradtx.transforms._adam import ema_momentum
from gradtx.transforms.interpolate import interpolate_gradient
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.orthogonalize import DEFAULT_NS_COEFFICIENTS
from gradtx.transforms.orthogonalize import NS_COEFFICIENTS
from gradtx.transforms.orthogonalize import orthogonalize
from gradtx.transforms.orthogonalize import scale_by_shape
from gradtx.wrappers.groups import partition

MATCH_RMS_ADAMW = 0.2
"""torch's ``adjust_lr_fn="match_rms_adamw"``: ``consistent_rms=0.2`` (Liu et al.)."""

ADAM_DEFAULTS = dict(
    adam_b1=0.9, adam_b2=0.999, adam_eps_root=0.0, adam_weight_decay=0.0, adam_learning_rate=None
)
"""optax's AdamW for the leaves that are not matrices (``convention="optax"`` only)."""

MUON: Specs = dict(
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    momentum=DECAY_RATE.schedulable(),
    nesterov=Flag(),
    ns_coefficients=NS_COEFFICIENTS,
    eps=NON_NEGATIVE,
    ns_steps=Int(0),
    adjust_lr_fn=Choice("original", "match_rms_adamw", optional=True),
    consistent_rms=Hyper(low=0.0, nullable=True),
    adaptive=Flag(),
    mask=Mask(),
    mask_fn=Function(),
    mu_dtype=DType(),
    ns_dtype=DType(),
    adam_b1=DECAY_RATE,
    adam_b2=DECAY_RATE,
    adam_eps_root=NON_NEGATIVE,
    adam_weight_decay=WEIGHT_DECAY,
    adam_learning_rate=LEARNING_RATE._replace(nullable=True),
    beta=Alias("momentum", DECAY_RATE.schedulable(), 0.95),
    ns_coeffs=Alias("ns_coefficients", NS_COEFFICIENTS, DEFAULT_NS_COEFFICIENTS),
    convention=CONVENTION,
)


def _check(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """How the options combine (run by ``derive`` and, for nested calls, by the body)."""
    out = dict(arguments)
    rms, adjust = out["consistent_rms"], out["adjust_lr_fn"]
    if adjust == "original" and rms is not None:
        raise ValueError(
            f"{call}(adjust_lr_fn='original', consistent_rms=...): consistent_rms is the "
            "'match_rms_adamw' scaling's factor; give one of them"
        )
    if adjust == "match_rms_adamw" and rms is None:
        out["consistent_rms"] = MATCH_RMS_ADAMW
    if out["convention"] == "torch":
        for name, default in ADAM_DEFAULTS.items():
            if not (out[name] is None or same(out[name], default) or traced(out[name])):
                raise ValueError(
                    f"{call}({name}=...): {name} configures the AdamW that convention='optax' "
                    "uses for leaves that are not matrices; torch's rule takes matrices only "
                    "(pair it with another optimizer through gradtx.partition)"
                )
            out[name] = None  # unused: not stored
    return out


@optimizer(
    references="`torch.optim.Muon` (Nesterov or not, ns_coefficients, ns_steps, eps, both "
    "adjust_lr_fn, weight decay; its Newton-Schulz run in float64); `optax.contrib.muon` "
    '(`convention="optax"`: AdamW for other leaves with its adam_* arguments, beta, '
    "consistent_rms, adaptive)",
    derive=folding(MUON, then=_check),
    **MUON,
)
def muon(
    learning_rate: ScalarOrSchedule = 1e-3,
    weight_decay: ScalarOrSchedule | None = 0.1,
    momentum: ScalarOrSchedule = 0.95,
    nesterov: bool = True,
    ns_coefficients: Any = DEFAULT_NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    consistent_rms: float | None = None,
    adaptive: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    mu_dtype: DTypeLike | None = None,
    ns_dtype: DTypeLike | None = None,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: ScalarOrSchedule | None = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    beta: ScalarOrSchedule = 0.95,
    ns_coeffs: Any = DEFAULT_NS_COEFFICIENTS,
    convention: str = "torch",
) -> GradientTransformation:
    """Muon (Jordan et al.), as ``torch.optim.Muon``: for 2-D parameters only.

    Update (``t`` from 1, per matrix ``θ`` of shape (rows, cols))::

      m_t = μ m_{t-1} + (1 - μ) g_t                        (m_0 = 0)
      M_t = μ m_t + (1 - μ) g_t  if nesterov  else  m_t
      O_t = NS_{a,b,c}^{ns_steps}(M_t / max(‖M_t‖_F, eps))  (see ``orthogonalize``)
      s   = sqrt(max(1, rows / cols))        (adjust_lr_fn None or "original")
          = 0.2 sqrt(max(rows, cols))        ("match_rms_adamw"; consistent_rms r: r·...)
      θ_t = θ_{t-1} - η_t (s O_t + λ θ_{t-1})

    Every leaf must be a matrix: another leaf is an error at ``init`` that
    names it.  Pair Muon with AdamW for the others::

      gradtx.partition({"muon": gradtx.muon(0.02), "adamw": gradtx.adamw(3e-4)},
                       labels_fn=lambda p: jax.tree.map(
                           lambda x: "muon" if x.ndim == 2 else "adamw", p))

    ``convention="optax"`` follows ``optax.contrib.muon``: the momentum is
    bias-corrected (Nesterov: ``μ m_t / (1 - μ^{t+1}) + (1 - μ) g_t / (1 - μ^t)``,
    else ``m_t / (1 - μ^t)``), the normalisation is ``M / (‖M‖_F + eps)``,
    ``s`` reads a matrix as (fan_in, fan_out) = (rows, cols) (flax's
    layout; torch's is (out, in)), and the leaves that are not matrices get
    AdamW with ``adam_b1``, ``adam_b2``, ``eps``, ``adam_eps_root``,
    ``adam_weight_decay`` and ``adam_learning_rate`` (default: η), its
    momentum Nesterov when ``nesterov`` is.

    Chain: ``add_momentum(μ, ema=True) → interpolate_gradient(μ) [nesterov] →
    orthogonalize(ns_coefficients, ns_steps, eps) → scale_by_shape →
    decoupled_weight_decay → scale_by_learning_rate``; optax's:
    ``partition`` of that (with ``add_nesterov_momentum(μ, warming=False)``
    or ``add_momentum → bias_correct``) and of ``… → scale_by_rms(adam_b2, eps) →
    decoupled_weight_decay → scale_by_learning_rate``.

    Differences:
      * torch runs Newton-Schulz in bfloat16 whatever the params' dtype;
        here in the params' dtype, at least float32 (``ns_dtype=jnp.bfloat16``
        for torch's cast: the iteration bit for bit on small matrices, within a
        bfloat16 ulp on larger ones, whose sums XLA orders otherwise; the
        params after a step within an ulp, since torch decays them first and
        then adds the step, where gradtx adds one update).  With that cast
        removed, torch and gradtx agree to 1e-10.
        torch refuses ``ns_steps >= 100`` (for speed); any count runs here.
        torch refuses complex params; here the iteration orthogonalises a
        complex matrix with its conjugate transpose, as optax's does.
      * optax: equal given optax's values (its defaults: ``weight_decay=0``,
        ``eps=1e-8``; ``learning_rate`` is required there).  Not supported:
        optax's ``preconditioning`` other than its default, string presets of
        ``ns_coeffs`` (pass the tuples), ``muon_weight_dimension_numbers``
        (reshape to matrices, or ``partition``).
      * ``beta`` and ``ns_coeffs`` are optax's names for ``momentum`` and
        ``ns_coefficients`` (same defaults): given, they replace them and are
        stored under torch's names.  ``consistent_rms`` (optax) and
        ``adaptive`` apply under both conventions; the ``adam_*`` arguments
        only under optax's (under torch's, a value other than the default is an error).

    Args:
      learning_rate: η, a number or schedule.
      weight_decay: λ, decoupled, times η (both libraries).
      momentum: μ in [0, 1), a number or schedule (torch's ``OneCycleLR`` and
        ``CyclicLR`` cycle it: ``schedules.one_cycle_momentum``, ``cyclical``).
      nesterov: use the Nesterov look-ahead of the momentum.
      ns_coefficients: ``(a, b, c)``, or (optax) a table of triples, one per iteration.
      eps: guards the normalisation (optax: also AdamW's eps).
      ns_steps: Newton-Schulz iterations.
      adjust_lr_fn: ``None``/``"original"`` (width scaling) or ``"match_rms_adamw"``.
      consistent_rms: optax's: the RMS-matching factor (``"match_rms_adamw"`` is 0.2).
      adaptive: scale by ``⟨M_t, O_t⟩`` (optax's).
      mask, mask_fn: which matrices are decayed (optax's ``weight_decay_mask``).
      mu_dtype: storage dtype of the momentum (and of AdamW's).
      ns_dtype: dtype of the Newton-Schulz iteration (torch: bfloat16); for complex
        params a real dtype names the precision (float64: complex128, others complex64),
        for real ones a complex dtype its parts' (complex64: float32).
      adam_b1, adam_b2, adam_eps_root, adam_weight_decay, adam_learning_rate:
        optax's AdamW for other leaves (``convention="optax"``).
      beta: optax's name for ``momentum``.
      ns_coeffs: optax's name for ``ns_coefficients``.
      convention: ``"torch"`` or ``"optax"``: whose rule, never whose defaults.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.muon(0.02)
      >>> params = {"w": jnp.eye(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.eye(3)}, state, params)
      >>> round(float(jnp.linalg.norm(updates["w"] + 0.02 * 0.1 * params["w"])), 3)
      0.024

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024;
      Liu et al., "Muon is Scalable for LLM Training", 2025.
    """
    call = current_call("gradtx.muon")
    given = dict(momentum=momentum, beta=beta, ns_coefficients=ns_coefficients, ns_coeffs=ns_coeffs)
    given = fold(call, MUON, given)
    momentum, ns_coefficients = given["momentum"], given["ns_coefficients"]
    options = _check(call, dict(
        consistent_rms=consistent_rms, adjust_lr_fn=adjust_lr_fn, convention=convention,
        adam_b1=adam_b1, adam_b2=adam_b2, adam_eps_root=adam_eps_root,
        adam_weight_decay=adam_weight_decay, adam_learning_rate=adam_learning_rate,
    ))  # fmt: skip
    torch_rule = convention == "torch"
    if torch_rule:
        numerator = [add_momentum(momentum, ema=True, dtype=mu_dtype)]
        numerator += [interpolate_gradient(momentum)] if nesterov else []
    else:
        numerator = ema_momentum(momentum, nesterov, mu_dtype)
    matrices = descent(
        *numerator,
        orthogonalize(ns_coefficients, ns_steps, eps, eps_mode="floor" if torch_rule else "add",
                      adaptive=adaptive, dtype=ns_dtype),
        scale_by_shape(options["consistent_rms"], layout="out_in" if torch_rule else "in_out"),
        learning_rate=learning_rate, weight_decay=weight_decay, decoupled=True, mask=mask,
        mask_fn=mask_fn,
    )  # fmt: skip
    if torch_rule:
        return matrices
    # Which leaves are matrices is a per-leaf question: refuse flat buffers here, where
    # the error can name muon (built inside gradtx.flatten's init).
    _tree.check_per_leaf(call, "gradtx.muon")
    others = descent(
        *adam_stages(adam_b1, adam_b2, eps, adam_eps_root, nesterov=nesterov, mu_dtype=mu_dtype),
        learning_rate=learning_rate if adam_learning_rate is None else adam_learning_rate,
        weight_decay=adam_weight_decay, decoupled=True,
    )  # fmt: skip

    def labels(params):
        _tree.check_per_leaf(call, "gradtx.muon")
        return jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)

    return partition({"muon": matrices, "adam": others}, labels_fn=labels)
