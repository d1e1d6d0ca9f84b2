"""AdaBelief and Yogi: Adam's first moment over a different second moment."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx.optimizers._stages import descent
from gradtx.transforms.additive_rms import scale_by_additive_rms
from gradtx.transforms.belief import scale_by_belief
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct

# optax.scale_by_yogi's default, which optax.yogi does not expose: both moments start here.
YOGI_INITIAL_VALUE = 1e-6


@optimizer(
    references="`optax.adabelief` (`eps_root`, `nesterov`)",
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    nesterov=Flag(),
)
def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief (Zhuang et al.), as ``optax.adabelief``.

    Update (``t`` from 1, ``m_0 = s_0 = 0``)::

      m_t = b1 m_{t-1} + (1 - b1) g_t
      s_t = b2 s_{t-1} + (1 - b2) (g_t - m_t)² + eps_root
      θ_t = θ_{t-1} - η_t · m_t / (1 - b1^t) / (sqrt(s_t / (1 - b2^t)) + eps)

    Adam with the variance of the gradient around its EMA ("belief") in
    place of its raw second moment: steps are large where the gradient is
    predictable and small where it is not.  With ``nesterov`` the numerator
    ``m_t / (1 - b1^t)`` becomes Dozat's look-ahead
    ``b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t)``.

    Chain: ``add_momentum(b1, ema=True) → scale_by_belief(b2, eps, eps_root)
    → bias_correct(b1) → scale_by_learning_rate`` (with ``nesterov``,
    ``scale_by_belief(..., nesterov=b1)`` and no ``bias_correct``).

    Differences: none from ``optax.adabelief`` (its defaults ``eps = eps_root
    = 1e-16``; optax notes the paper's as ``eps = 1e-8, eps_root = 0``).  The
    authors' PyTorch package has further options (decoupled decay,
    rectification) that optax does not have.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment (prediction) EMA rate, in [0, 1).
      b2: EMA rate of the squared prediction error, in [0, 1).
      eps: added outside the root.
      eps_root: added to ``s_t`` every step (inside the root).
      nesterov: use Dozat's Nesterov look-ahead numerator.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adabelief(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, opt.init(params))
      >>> updates["w"]  # first step: m̂ = g, ŝ = (0.9 g)² (+ 1e-16): -η sign(g) / 0.9
      Array([-0.01111111,  0.01111111], dtype=float32)

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", NeurIPS 2020.
    """
    if nesterov:
        core = [scale_by_belief(b2, eps, eps_root, nesterov=b1)]
    else:
        core = [scale_by_belief(b2, eps, eps_root), bias_correct(b1)]
    return descent(add_momentum(b1, ema=True), *core, learning_rate=learning_rate)


@optimizer(
    references="`optax.yogi`",
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
)
def yogi(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3
) -> GradientTransformation:
    """Yogi (Zaheer et al.), as ``optax.yogi``.

    Update (``t`` from 1, ``m_0 = v_0 = 1e-6``)::

      m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - g_t²) g_t²
      θ_t = θ_{t-1} - η_t · m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)

    Adam whose second moment moves toward ``g²`` by a fixed fraction of
    ``g²`` rather than of the gap ``v - g²``: the effective learning rate
    cannot rise sharply after a run of small gradients.

    Chain: ``add_momentum(b1, ema=True, initial_value=1e-6) → bias_correct(b1)
    → scale_by_additive_rms(b2, eps, initial_value=1e-6) →
    scale_by_learning_rate``.

    Differences: none from ``optax.yogi`` (both moments start at 1e-6 and are
    bias-corrected: optax's choices, which ``optax.yogi`` does not expose).
    Where ``v`` and ``g²`` both overflow to infinity, ``v`` stays infinite here
    and becomes NaN in optax.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment EMA rate, in [0, 1).
      b2: Yogi's second-moment rate, in [0, 1).
      eps: added outside the root (1e-3, larger than Adam's).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.yogi(0.1, b1=0.0, b2=0.5, eps=0.0)
      >>> _, state = opt.update({"w": jnp.array([4.0])}, opt.init({"w": jnp.zeros(1)}))
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, state)  # a smaller gradient
      >>> # v_1 ≈ 0.5 · 16 = 8; v_2 = 8 - 0.5 · 1² = 7.5 (Adam's: 0.5 · 8 + 0.5 · 1 = 4.5)
      >>> updates["w"]  # -0.1 · 1 / sqrt(7.5 / 0.75) = -0.1 / sqrt(10) (Adam: -0.1 / sqrt(6))
      Array([-0.03162278], dtype=float32)

    References:
      Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    return descent(
        add_momentum(b1, ema=True, initial_value=YOGI_INITIAL_VALUE),
        bias_correct(b1),
        scale_by_additive_rms(b2, eps, initial_value=YOGI_INITIAL_VALUE),
        learning_rate=learning_rate,
    )
