"""NAdam: Adam with Dozat's Nesterov momentum, L2 or decoupled weight decay."""

from __future__ import annotations

from typing import Any

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._factory_state import Specs
from gradtx._factory_state import Unused
from gradtx._registry import optimizer
from gradtx._specs import NON_NEGATIVE
from gradtx.optimizers._aliases import same
from gradtx.optimizers._aliases import traced
from gradtx.optimizers._stages import descent
from gradtx.optimizers.adam import ADAM
from gradtx.transforms.momentum import add_nesterov_momentum
from gradtx.transforms.rms import scale_by_rms

_NADAM: Specs = {k: v for k, v in ADAM.items() if k not in ("amsgrad", "max_of")}


TORCH_MOMENTUM_DECAY = 4e-3


def _no_warming_under_optax(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """torch's ``momentum_decay`` under optax's rule (a constant b1) is refused, not ignored."""
    if arguments["convention"] != "optax":
        return arguments
    given = arguments["momentum_decay"]
    if not (same(given, TORCH_MOMENTUM_DECAY) or traced(given)):
        raise ValueError(
            f"{call}(momentum_decay={given!r}): torch's warming of b1; convention='optax' "
            "keeps b1 constant, so it has no meaning there"
        )
    return {**arguments, "momentum_decay": Unused("convention='optax' keeps b1 constant")}


@optimizer(
    derive=_no_warming_under_optax,
    references="`torch.optim.NAdam` (momentum_decay, L2, decoupled, maximize); "
    '`optax.nadam`/`nadamw` (`convention="optax"`)',
    momentum_decay=NON_NEGATIVE,
    **_NADAM,
)
def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    momentum_decay: float = TORCH_MOMENTUM_DECAY,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    eps_root: float = 0.0,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """NAdam (Dozat), as ``torch.optim.NAdam``.

    Update (``t`` from 1, ``ψ`` = momentum_decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                  (L2, unless decoupled)
      μ_t = b1 (1 - ½ · 0.96^{t ψ}),   Π_t = Π_{s≤t} μ_s
      m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      n_t = (1 - μ_t)/(1 - Π_t) · g_t + μ_{t+1}/(1 - Π_t μ_{t+1}) · m_t
      θ_t = θ_{t-1} - η_t (n_t / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1} [decoupled])

    Chain: ``add_l2 → add_nesterov_momentum(b1, momentum_decay) →
    scale_by_rms(b2, eps, bias_correction=True) → decoupled_weight_decay →
    scale_by_learning_rate`` (one of the two decays, or neither).

    Differences:
      * PyTorch: equal, including ``decoupled_weight_decay=True`` (NAdamW,
        ``θ(1 - ηλ)``).  PyTorch keeps ``Π_t`` in float32 unless torch's default
        dtype is float64; here it is in the hyperparameters' precision.
      * optax (``convention="optax"``): ``optax.nadam``/``optax.nadamw`` use a
        constant ``μ = b1`` (``Π_t = b1^t``).  torch's ``μ_t`` starts near
        ``b1 / 2`` and nears ``b1`` only after tens of thousands of steps, so
        with the defaults the two rules' steps differ by tens of percent early
        on (40-48% of torch's step over the first four steps of a constant
        gradient, 15% at the twelfth).  ``momentum_decay`` is then refused
        unless at its default (it has no meaning there).
      * Paper: Dozat's Alg. 2 schedule is the same ``0.96^{t/250}``; some
        transcriptions also multiply ``v̂`` by b2, which no implementation does.
      * Complex params: torch treats each as two real ones; here the second
        moment holds ``|g|²`` per element, as in optax.

    Args:
      learning_rate: η, a number or schedule.
      b1: the momentum EMA rate and the schedule's ceiling, in [0, 1).
      b2: second-moment decay in [0, 1).
      eps: added to the root.
      momentum_decay: ψ ≥ 0 (4e-3 = 1/250).
      weight_decay: λ; L2 unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay outside the adaptive step (NAdamW).
      eps_root: added inside the root (optax's).
      mask, mask_fn: which leaves are decayed.
      mu_dtype, nu_dtype: storage dtypes of the moments.
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.nadam(2e-3, weight_decay=1e-2, decoupled_weight_decay=True)
      >>> params = {"w": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    warming = convention == "torch"  # optax's rule reads no momentum_decay (None here)
    numerator = add_nesterov_momentum(
        b1, momentum_decay if warming else 0.0, warming=warming, dtype=mu_dtype
    )
    return descent(
        numerator,
        scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True, dtype=nu_dtype),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )
