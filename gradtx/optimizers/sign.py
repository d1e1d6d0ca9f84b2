"""Sign methods: signSGD, Signum and Lion step along the sign of a gradient estimate."""

from __future__ import annotations

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.interpolation import add_interpolated_momentum
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.sign import scale_by_sign


@optimizer(references="`optax.sign_sgd`", learning_rate=LEARNING_RATE)
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al.), as ``optax.sign_sgd``.

    Update::

      θ_t = θ_{t-1} - η_t sign(g_t)

    Every coordinate moves by exactly η_t (0 where the gradient is 0), so with
    a constant learning rate the iterates end in an oscillation of size η
    around a minimum: decay η to converge.

    Chain: ``scale_by_sign → scale_by_learning_rate``.

    Differences: none from ``optax.sign_sgd`` (``learning_rate`` is required,
    as there).  For a complex coordinate the sign is its phase ``z / |z|``.

    Args:
      learning_rate: η, a number or schedule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.sign_sgd(0.1)
      >>> params = {"w": jnp.array([1.0, -2.0, 3.0])}
      >>> updates, state = opt.update({"w": jnp.array([0.5, -4.0, 0.0])}, opt.init(params))
      >>> updates["w"]
      Array([-0.1,  0.1, -0. ], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018.
    """
    return descent(scale_by_sign(), learning_rate=learning_rate)


@optimizer(
    references="`optax.signum` (`accumulator_dtype`)",
    learning_rate=LEARNING_RATE,
    beta=DECAY_RATE,
    accumulator_dtype=DType(),
)
def signum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Signum: signSGD on an EMA of the gradients (Bernstein et al.), as ``optax.signum``.

    Update (``m_0 = 0``)::

      m_t = β m_{t-1} + (1 - β) g_t
      θ_t = θ_{t-1} - η_t sign(m_t)

    The EMA needs no bias correction: ``1 - β^t > 0`` does not change its sign.

    Chain: ``add_momentum(beta, ema=True) → scale_by_sign →
    scale_by_learning_rate``.

    Differences: none from ``optax.signum``.  The paper's Signum uses the
    same EMA (its momentum constant is β).

    Args:
      learning_rate: η, a number or schedule.
      beta: the EMA rate β, in [0, 1).
      accumulator_dtype: storage dtype of ``m`` (``None``: the params' dtype, float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.signum(0.1, beta=0.5)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> _, state = opt.update({"w": jnp.array([1.0, 1.0])}, state)
      >>> updates, _ = opt.update({"w": jnp.array([0.5, -3.0])}, state)  # m = [0.75, -1]
      >>> updates["w"]
      Array([-0.1,  0.1], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018.
    """
    return descent(
        add_momentum(beta, ema=True, dtype=accumulator_dtype),
        scale_by_sign(),
        learning_rate=learning_rate,
    )


@optimizer(
    references="`optax.lion` (`mu_dtype`, schedules, mask)",
    learning_rate=LEARNING_RATE,
    b1=Hyper(0.0, 1.0, decays=True),
    b2=DECAY_RATE,
    mu_dtype=DType(),
    weight_decay=WEIGHT_DECAY,
    mask=Mask(),
    mask_fn=Function(),
)
def lion(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: DTypeLike | None = None,
    weight_decay: ScalarOrSchedule | None = 1e-3,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Lion (Chen et al.), as ``optax.lion``.

    Update (``m_0 = 0``)::

      c_t = b1 m_{t-1} + (1 - b1) g_t
      m_t = b2 m_{t-1} + (1 - b2) g_t
      θ_t = θ_{t-1} - η_t (sign(c_t) + λ θ_{t-1})

    The step follows the sign of an interpolation between the gradient and
    the momentum *before* it is updated; the momentum itself is a slower EMA.
    The decay ``λ`` is decoupled and multiplied by η_t, as in the paper's
    Algorithm and optax.

    Chain: ``add_interpolated_momentum(b1, b2) → scale_by_sign →
    decoupled_weight_decay → scale_by_learning_rate``.

    Differences: none from ``optax.lion`` (its defaults, its positional
    order; ``mask`` is a pytree of bools, a function goes to ``mask_fn``).
    optax's ``scale_by_lion`` also has "smooth" and "refined" sign variants,
    which ``optax.lion`` does not expose.

    Args:
      learning_rate: η, a number or schedule.
      b1: interpolation weight of the previous momentum, in [0, 1].
      b2: the momentum's EMA rate, in [0, 1).
      mu_dtype: storage dtype of the momentum (``None``: the params' dtype, float32 for 16-bit ones).
      weight_decay: λ, a number or schedule (``None`` or 0: no decay).
      mask: which leaves are decayed (a pytree of bools, or a prefix of the params).
      mask_fn: a function of the params returning such a mask (optax's callable ``mask``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.lion(0.1, weight_decay=0.5)
      >>> params = {"w": jnp.array([1.0, -4.0])}
      >>> updates, _ = opt.update({"w": jnp.array([3.0, 0.25])}, opt.init(params), params)
      >>> updates["w"]  # -0.1 · (sign(0.1 g) + 0.5 θ)
      Array([-0.15,  0.1 ], dtype=float32)

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """
    return descent(
        add_interpolated_momentum(b1, b2, dtype=mu_dtype),
        scale_by_sign(),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=mask,
        mask_fn=mask_fn,
    )
