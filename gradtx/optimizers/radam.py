"""RAdam: Adam with the variance of its adaptive rate rectified."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import LEARNING_RATE
from gradtx._specs import Choice
from gradtx.optimizers._stages import descent
from gradtx.optimizers.adam import ADAM
from gradtx.transforms.decay import decoupled_weight_decay as decay_stage
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rectify import THRESHOLD
from gradtx.transforms.rectify import rectify
from gradtx.transforms.rectify import when_rectified

RADAM: Specs = dict(
    learning_rate=LEARNING_RATE,
    b1=ADAM["b1"],
    b2=ADAM["b2"],
    eps=ADAM["eps"],
    threshold=THRESHOLD,
    weight_decay=ADAM["weight_decay"],
    decoupled_weight_decay=ADAM["decoupled_weight_decay"],
    compare=Choice(">", ">=", optional=True),
    untractable=Choice("sgd", "skip"),
    eps_on=Choice("v", "v_hat", optional=True),
    mask=ADAM["mask"],
    mask_fn=ADAM["mask_fn"],
    maximize=ADAM["maximize"],
    convention=CONVENTION,
)


@optimizer(
    references="`torch.optim.RAdam` (L2, decoupled, maximize); `optax.radam` "
    '(`convention="optax"`); `pytorch_optimizer.RAdam` (`untractable="skip"`)',
    **RADAM,
)
def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    threshold: float = 5.0,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    compare: str | None = None,
    untractable: str = "sgd",
    eps_on: str | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """RAdam (Liu et al.), as ``torch.optim.RAdam``.

    Update (``t`` from 1, ``λ`` = weight_decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                          (L2, the default)
      m_t = b1 m_{t-1} + (1 - b1) g_t,     m̂_t = m_t / (1 - b1^t)
      v_t = b2 v_{t-1} + (1 - b2) g_t²
      ρ_∞ = 2 / (1 - b2) - 1,              ρ_t = ρ_∞ - 2 t b2^t / (1 - b2^t)
      ρ_t > threshold:  d_t = r_t m̂_t sqrt(1 - b2^t) / (sqrt(v_t) + eps)
                        r_t = sqrt((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t))
      otherwise:        d_t = m̂_t                          (SGD with momentum)
      θ_t = θ_{t-1} - η_t (d_t + λ θ_{t-1})                 (decoupled: λθ here instead)

    Chain: ``add_l2 → add_momentum(b1, ema=True) → bias_correct(b1) →
    rectify(b2, eps, threshold) → decoupled_weight_decay → scale_by_learning_rate``
    (the decay stages only when ``weight_decay`` is not zero).

    Differences: the defaults equal ``torch.optim.RAdam`` (eps on the
    uncorrected root, strict ``>``, SGD steps before the threshold, L2 decay
    or, with ``decoupled_weight_decay``, ``θ(1 - ηλ)`` on every step).
    ``optax.radam`` (``convention="optax"``) puts eps on the corrected root
    and compares with ``>=`` (``eps_on="v_hat"``, ``compare=">="``).  The
    authors' code and ``pytorch_optimizer.RAdam`` skip the first steps, decay
    included: ``untractable="skip", compare=">=", decoupled_weight_decay=True``.
    The paper's threshold is 4 and it has no eps.  For ``b2=0.999``, ρ_t
    first exceeds 5 at t = 6.  ρ_t is computed without the cancellation
    torch's and optax's formula suffers for b2 near 1: within about 1e-6
    of 1 they can switch to rectified steps on another step than the exact
    rule does, as here (docs/errors.md).  For complex params torch treats each as two
    real ones; here v holds ``|g|²`` per element, as in optax.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1), a number or schedule.
      b2: second-moment decay in [0, 1).
      eps: added to the root of the second moment.
      threshold: ρ_t must pass it for the adaptive step; at least 4 (r_t's root is
        of a negative number for 2 < ρ_t < 4).
      weight_decay: λ.
      decoupled_weight_decay: decay the weights directly instead of the L2 term.
      compare: ``">"`` or ``">="`` against ``threshold`` (``None``: the convention's).
      untractable: ``"sgd"`` (momentum step) or ``"skip"`` (no step, no decay)
        while ρ_t does not pass the threshold.
      eps_on: ``"v"`` (E2, torch) or ``"v_hat"`` (E1, optax); ``None``: the convention's.
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.radam(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)  # (2, -4)
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> # ρ_∞ = 1999 and ρ_1 = 1999 - 2 · 0.999 / 0.001 = 1, not above the threshold 5
      >>> updates["w"]  # so SGD with momentum: -η m̂_1 = -0.01 g (Adam: -0.01 sign(g))
      Array([-0.02,  0.04], dtype=float32)

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
      ICLR 2020 (arXiv:1908.03265).
    """
    optax_rule = convention == "optax"
    compare = compare or (">=" if optax_rule else ">")
    eps_on = eps_on or ("v_hat" if optax_rule else "v")
    core = [
        add_momentum(b1, ema=True),
        bias_correct(b1),
        rectify(b2, eps, threshold, compare=compare, untractable=untractable, eps_on=eps_on),
    ]
    if decoupled_weight_decay and untractable == "skip" and weight_decay is not None:
        # no step, no decay (the authors' code): the decay runs inside when_rectified
        decay = decay_stage(weight_decay, mask=mask, mask_fn=mask_fn)
        core.append(when_rectified(decay, b2, threshold, compare=compare))
        weight_decay = None
    return descent(
        *core,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )
