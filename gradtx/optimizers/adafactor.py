"""Adafactor: a factored second moment, a step relative to the parameters' scale."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any
from typing import cast

import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._build import current_call
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx.optimizers._aliases import Alias
from gradtx.optimizers._aliases import fold
from gradtx.optimizers._aliases import folding
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.block_rms import clip_by_block_rms
from gradtx.transforms.block_rms import scale_by_param_rms
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.factored import scale_by_factored_rms
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale
from gradtx.transforms.scaling import scale_by_learning_rate

OPTAX_MIN_SCALE = 1e-3
"""optax's fixed floor of the parameter scale (torch's ``eps2`` default too)."""


class EpsPair(Hyper):
    """``eps``: torch's pair ``(eps1, eps2)`` (``eps1`` may be None) or optax's single number.

    Stored as the numbers given: ``(eps1, eps2)``, ``(eps2,)`` when ``eps1``
    is None (a None is never stored), or the single number.
    """

    def check(self, call, name, value):
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, (tuple, list)) and np.ndim(value) > 0:
            raise TypeError(
                f"{call}({name}=...): {name} must be a pair (eps1, eps2) or a number, got an "
                f"array of shape {np.shape(value)} (give the pair as a tuple)"
            )
        if not isinstance(value, (tuple, list)):
            return super().check(call, name, value)  # optax's eps: a number >= 0
        if len(value) != 2:
            raise TypeError(
                f"{call}({name}={value!r}): {name} must be a pair (eps1, eps2) or a number"
            )
        checked = [
            x if i == 0 and x is None else Hyper(low=0.0).check(call, f"{name}[{i}]", x)
            for i, x in enumerate(value)
        ]
        return (checked[1],) if checked[0] is None else tuple(checked)


def eps_parts(eps: Any) -> tuple[Any, Any]:
    """``(eps1 or None, eps2)`` from any form of ``eps``: given, checked or stored.

    optax's single number ``e`` is added to g², so it is ``eps1²``: ``eps1 = sqrt(e)``,
    with optax's fixed floor ``eps2 = 1e-3``.
    """
    if isinstance(eps, (tuple, list)):
        return (None, eps[0]) if len(eps) == 1 else (eps[0], eps[1])
    shape = jnp.shape(eps)
    if shape == ():
        return jnp.sqrt(jnp.asarray(eps)), OPTAX_MIN_SCALE
    return (None, eps[0]) if shape == (1,) else (eps[0], eps[1])


def _relative_step(learning_rate: Any) -> Callable:
    """torch's ``ρ_t = min(η, 1/√t)`` as a function of the 0-based step count."""

    def rho(count):
        lr = _dtypes.as_float(learning_rate)
        return jnp.minimum(lr, 1 / jnp.sqrt(count.astype(lr.dtype) + 1))

    return rho


CLIPPING = Hyper(low=1.0, nullable=True)

ADAFACTOR: Specs = dict(
    learning_rate=LEARNING_RATE._replace(nullable=True),
    beta2_decay=Hyper(high=0.0),
    eps=EpsPair(low=0.0),
    d=CLIPPING,
    weight_decay=WEIGHT_DECAY,
    maximize=Flag(),
    factored=Flag(),
    min_dim_size_to_factor=Int(0),
    decay_rate=Alias("beta2_decay", Hyper(low=0.0), 0.8, operator.neg),
    decay_offset=Hyper(integer=True, optional=True),
    multiply_by_parameter_scale=Flag(),
    clipping_threshold=Alias("d", CLIPPING, 1.0),
    momentum=DECAY_RATE._replace(optional=True),
    dtype_momentum=DType(),
    weight_decay_rate=WEIGHT_DECAY,
    mask=Mask(),
    mask_fn=Function(),
    convention=CONVENTION,
)


@optimizer(
    references="`torch.optim.Adafactor` (0-D to 3-D leaves; beta2_decay, eps, d, weight "
    'decay, maximize); `optax.adafactor` (`convention="optax"`: factored or not, '
    "parameter scale, clipping, momentum, weight_decay_rate, decay_offset)",
    derive=folding(ADAFACTOR),
    **ADAFACTOR,
)
def adafactor(
    learning_rate: ScalarOrSchedule | None = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] | float = (None, 1e-3),
    d: float | None = 1.0,
    weight_decay: ScalarOrSchedule | None = 0.0,
    *,
    maximize: bool = False,
    factored: bool = True,
    min_dim_size_to_factor: int = 0,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = None,
    weight_decay_rate: ScalarOrSchedule | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    convention: str = "torch",
) -> GradientTransformation:
    """Adafactor (Shazeer & Stern), as ``torch.optim.Adafactor``.

    Update (``t`` from 1, per leaf; ``G = -g`` with ``maximize``)::

      β̂_t = 1 - t^{beta2_decay}
      R_t = β̂_t R_{t-1} + (1 - β̂_t) mean_cols(G²),  C_t likewise over rows
      V̂_t = R_t C_t / max(mean_rows(R_t), eps1)   (a leaf with >= 2 axes: its last two)
      V̂_t = β̂_t V̂_{t-1} + (1 - β̂_t) G²           (0-D and 1-D leaves)
      U_t = G / sqrt(max(V̂_t, eps1²)),   Û_t = U_t / max(1, RMS(U_t) / d)
      ρ_t = min(η_t, 1/√t),   α_t = max(eps2, RMS(θ_{t-1})) ρ_t
      θ_t = θ_{t-1} - η_t λ θ_{t-1} - α_t Û_t

    ``convention="optax"`` follows ``optax.adafactor`` instead: ``eps1²`` is
    added to every ``G²`` (optax's ``eps``) and not used as a floor, the
    factored axes are the two largest (of equal sizes, the later axis, as
    optax's ``argsort``), and ``ρ_t = η_t`` (no ``1/√t``).

    Chain: ``scale(-1) [maximize] → scale_by_factored_rms(-beta2_decay, eps1) →
    clip_by_block_rms(d) → scale_by_learning_rate(min(η, 1/√t)) [optax: η] →
    scale_by_param_rms(eps2) → add_momentum(momentum, ema=True) →
    decoupled_weight_decay(weight_decay_rate) → decoupled_weight_decay(η·λ) →
    scale(-1)``; ``None`` stages are left out.

    Differences:
      * torch: equal.  ``eps1=None`` is the machine epsilon of each leaf's
        dtype (torch takes the first parameter's for all).  A NaN in one
        coordinate of a 1-D leaf makes the whole leaf NaN here (its RMS is
        NaN); torch's Python ``max(1, RMS)`` drops that NaN and only the
        coordinate goes NaN, the others stepping as usual at that step and
        shrunk from the next (the param RMS is then NaN, and ``max(eps2,
        NaN)`` is ``eps2``).  torch refuses complex params; here they work,
        with ``|g|²`` as the second moment.
      * optax (``convention="optax"``): equal given optax's values: optax's
        defaults are ``learning_rate=None`` (no rate stage, as here: ``None``
        is accepted under this convention only), ``eps=1e-30``,
        ``min_dim_size_to_factor=128``, ``weight_decay=0``.  optax computes
        ``β̂_t`` in float32 (from a Python or an array ``decay_rate``), here in the
        hyperparameters' precision; optax keeps the momentum in float32
        (``dtype_momentum``), here in the params' dtype (float32 for 16-bit
        params) unless given.  With ``decay_offset > 0`` optax's first step
        takes ``0^(-decay_rate)`` and its params turn NaN for good; here
        ``β̂_t`` is 0 until the count passes the offset and the steps stay
        finite (``scale_by_factored_rms``).
      * Arguments of one library only keep their meaning under the other
        convention: ``weight_decay`` is always torch's ``θ(1 - ηλ)``,
        ``weight_decay_rate`` always optax's ``θ - λ'θ`` (not times η);
        ``momentum`` is an EMA of the scaled step under both;
        ``min_dim_size_to_factor``, ``factored``, ``decay_offset`` and
        ``multiply_by_parameter_scale`` apply to both rules.
      * ``decay_rate`` and ``clipping_threshold`` are optax's names for
        ``-beta2_decay`` and ``d`` (same defaults): given a value other than
        that default, they replace them (which must then keep theirs) and are
        stored under torch's names; given the default, they count as not
        given.
      * Paper: ρ_t caps at 1e-2 (η here, as torch), eps1 = 1e-30 is added
        to G² (optax's placement), and no weight decay.

    Args:
      learning_rate: η, a number or schedule: the cap of the relative step
        (torch) or the step's scale (optax; ``None``: no scale, η = 1), and the
        decay's factor.
      beta2_decay: the second moment's decay exponent, <= 0.
      eps: ``(eps1, eps2)``: ``eps1`` the floor of the second moment's RMS
        (``None``: each leaf's machine epsilon), ``eps2`` the floor of the
        parameter scale; or one number, optax's ``eps``: ``eps1 = sqrt(eps)``
        (so ``eps`` is added to G² under ``convention="optax"`` and floors G²
        under torch's) and ``eps2 = 1e-3``.
      d: the update clipping threshold (>= 1, as torch requires, under either
        convention: optax takes any threshold; ``None``: no clipping).
      weight_decay: λ, decoupled and times η (torch's).
      maximize: ascend the objective instead.
      factored: ``False`` keeps a full second moment for every leaf (optax's).
      min_dim_size_to_factor: factor only leaves whose two factored axes each
        have at least this many elements (optax's; 0 factors every leaf of >= 2
        axes).
      decay_rate: optax's name for ``-beta2_decay``.
      decay_offset: shifts the step of ``β̂_t`` (optax's, for fine-tuning
        with a restored count).
      multiply_by_parameter_scale: multiply by ``max(eps2, RMS(θ))``.
      clipping_threshold: optax's name for ``d``.
      momentum: EMA coefficient of the scaled steps (optax's; ``None``: none).
      dtype_momentum: storage dtype of the momentum buffer.
      weight_decay_rate: optax's decay, added after the step, not times η.
      mask, mask_fn: which leaves both decays apply to (optax's ``weight_decay_mask``).
      convention: ``"torch"`` or ``"optax"``: whose rule, never whose defaults.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adafactor()
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
      >>> updates["w"]  # first step: ρ_1 = η, α = RMS(θ) η, |Û| = 1
      Array([[-0.01, -0.01, -0.01],
             [-0.01, -0.01, -0.01]], dtype=float32)

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
      Memory Cost", ICML 2018.
    """
    call = current_call("gradtx.adafactor")
    given: dict[str, Any] = dict(beta2_decay=beta2_decay, decay_rate=decay_rate, d=d)
    given = fold(call, ADAFACTOR, {**given, "clipping_threshold": clipping_threshold})
    exponent, threshold = -given["beta2_decay"], given["d"]
    eps1, eps2 = eps_parts(eps)
    torch_rule = convention == "torch"
    stages = [
        scale_by_factored_rms(
            exponent, eps1, decay_offset=decay_offset,
            eps_mode="floor" if torch_rule else "add", axes="last" if torch_rule else "largest",
            factored=factored, min_dim_size_to_factor=min_dim_size_to_factor,
        )
    ]  # fmt: skip
    if threshold is not None:
        stages.append(clip_by_block_rms(threshold))
    if learning_rate is None and torch_rule:
        raise TypeError(
            f"{call}(learning_rate=None): torch's rule caps its relative step at the learning "
            "rate; None (no learning-rate stage) is optax's, with convention='optax'"
        )
    if learning_rate is not None:
        step = _relative_step(learning_rate) if torch_rule else learning_rate
        stages.append(scale_by_learning_rate(step, flip_sign=False))
    if multiply_by_parameter_scale:
        stages.append(scale_by_param_rms(eps2))
    if momentum is not None:
        stages.append(add_momentum(momentum, ema=True, dtype=dtype_momentum))
    if weight_decay_rate is not None:
        stages.append(decoupled_weight_decay(weight_decay_rate, mask=mask, mask_fn=mask_fn))
    if weight_decay is not None:
        rate = 1.0 if learning_rate is None else learning_rate
        decay = cast(Any, rate) * weight_decay  # the current values, in the body
        stages.append(decoupled_weight_decay(decay, mask=mask, mask_fn=mask_fn))
    head = gradient_stages(mask=mask, mask_fn=mask_fn, maximize=maximize)
    return chain(*head, *stages, scale(-1.0))
