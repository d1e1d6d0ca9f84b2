"""Layer-wise methods: NovoGrad and Fromage scale each leaf by its own norms."""

from __future__ import annotations

import jax.numpy as jnp

from gradtx import _dtypes
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.decay import check_mask_pair
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.layerwise_norm import scale_by_layerwise_norm
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.trust_ratio import scale_by_trust_ratio


@optimizer(
    references="`optax.novograd` (`eps_root`, weight decay)",
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY,
    mask=Mask(),
    mask_fn=Function(),
)
def novograd(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule | None = 0.0,
    *,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """NovoGrad (Ginsburg et al.), as ``optax.novograd``.

    Update, for each leaf (layer) with ``‖·‖`` its Frobenius norm::

      v_1 = ‖g_1‖²,   v_t = b2 v_{t-1} + (1 - b2) ‖g_t‖²
      m_t = b1 m_{t-1} + g_t / (sqrt(v_t + eps_root) + eps) + λ θ_{t-1}     (m_0 = 0)
      θ_t = θ_{t-1} - η_t m_t

    The second moment is one number per layer, so the normalised gradient
    keeps each layer's direction and the state is half of Adam's.  The decay
    ``λθ`` is added after the normalisation and enters the momentum.

    Chain: ``scale_by_layerwise_norm(b2, eps, eps_root) → decoupled_weight_decay
    → add_momentum(b1) → scale_by_learning_rate``.

    Differences: none from ``optax.novograd`` (its defaults, its heavy-ball
    momentum ``b1 m + ...`` and its first step from ``‖g_1‖²``) but one: with
    ``eps = eps_root = 0`` a layer whose gradients have all been 0 gets a step
    of 0, where optax's ``0/0`` is NaN.  ``weight_decay``
    may be a schedule here (optax's passes it to ``scale_by_novograd`` as a
    number).  It needs each leaf's shape, so it refuses to run inside
    ``gradtx.flatten``.

    Args:
      learning_rate: η, a number or schedule.
      b1: heavy-ball momentum coefficient, in [0, 1).
      b2: EMA rate of the layer-wise squared norm, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      weight_decay: λ (``None`` or 0: no decay).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.novograd(0.1, eps=0.0)
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> updates, _ = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params), params)
      >>> updates["w"].round(6)  # -η g / ‖g‖
      Array([-0.06, -0.08], dtype=float32)

    References:
      Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive
      Moments for Training of Deep Networks", arXiv:1905.11286, 2019.
    """
    check_mask_pair(mask, mask_fn)
    decay = []
    if weight_decay is not None:
        decay = [decoupled_weight_decay(weight_decay, mask=mask, mask_fn=mask_fn)]
    return descent(
        scale_by_layerwise_norm(b2, eps, eps_root=eps_root),
        *decay,
        add_momentum(b1),
        learning_rate=learning_rate,
    )


@optimizer(
    references="`optax.fromage` (schedules)",
    learning_rate=LEARNING_RATE,
    min_norm=NON_NEGATIVE,
)
def fromage(learning_rate: ScalarOrSchedule, min_norm: float = 1e-6) -> GradientTransformation:
    """Fromage, Frobenius matched gradient descent (Bernstein et al.), as ``optax.fromage``.

    Update, for each leaf (layer) with ``‖·‖`` its Frobenius norm clipped
    below at ``min_norm``::

      θ_t = (θ_{t-1} - η_t ‖θ_{t-1}‖ / ‖g_t‖ · g_t) / sqrt(1 + η_t²)

    Each layer moves by the fraction η of its own norm (the "deep relative
    trust" step), and the division by ``sqrt(1 + η²)`` undoes the growth of
    the norm that a step orthogonal to θ would cause.  With ``c = 1 / sqrt(1 + η²)``
    the update is ``-η c · trust(g) + (c - 1) θ``.

    Chain: ``scale_by_trust_ratio(min_norm) → scale_by_learning_rate(η c)``,
    then ``+ (c - 1) θ`` (``decoupled_weight_decay``'s stage with a negative
    coefficient, which its public factory refuses); ``c`` is computed from
    the stored η at every step, so setting or scheduling η changes both.

    Differences: none from ``optax.fromage`` for a constant learning rate.
    Given a schedule, optax forms the decay ``1/sqrt(1 + η²) − 1`` from the
    schedule's float32 value (its count is int32), where ``1 − 1/sqrt(1 + η²)``
    cancels: under x64 its params then drift from the float64 values by about
    4e-7 relative (a 6-step probe); here the decay is formed in the default
    float dtype.  It needs each leaf's shape, so it refuses to run inside
    ``gradtx.flatten``.

    Args:
      learning_rate: η, a number or schedule.
      min_norm: lower bound of the parameter and gradient norms.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.fromage(0.75)  # c = 0.8
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> updates, _ = opt.update({"w": jnp.array([0.0, 2.0])}, opt.init(params), params)
      >>> gradtx.apply_updates(params, updates)["w"].round(6)  # (θ - 0.75 · 5/2 · g) · 0.8
      Array([2.4, 0.2], dtype=float32)

    References:
      Bernstein et al., "On the Distance Between Two Neural Networks and the
      Stability of Learning", NeurIPS 2020.
    """
    lr = _dtypes.as_float(learning_rate)
    # 1/sqrt(1 + η²) - 1 as expm1(-½ log1p(η²)): as a difference it cancels (float32:
    # 5% off at η = 1e-3, and 0 at η = 1e-4); optax forms it in Python floats
    shrink_minus_1 = jnp.expm1(-0.5 * jnp.log1p(lr**2))
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_learning_rate(lr * (1 + shrink_minus_1)),
        decoupled_weight_decay(shrink_minus_1),
    )
