"""DoG and DoWG: SGD whose step size is the distance travelled over the gradients seen."""

from __future__ import annotations

from gradtx import _checks
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx._specs import Option
from gradtx.optimizers._stages import descent
from gradtx.transforms.distance import INIT_STEPS
from gradtx.transforms.distance import scale_by_distance_over_gradients
from gradtx.transforms.distance import scale_by_distance_over_weighted_gradients


class InitStep(Option):
    """optax's ``(tag, value)`` pair for DoG's first step: ``tag`` one of
    ``"distance"``, ``"learning_rate"``, ``"heuristic"``; ``value`` a number >= 0."""

    def check(self, call, name, value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(
                f"{call}({name}={value!r}): {name} must be a pair (tag, value), tag one of "
                f"{INIT_STEPS}"
            )
        tag, number = value
        _checks.check_choice(call, name, tag, INIT_STEPS)
        return (tag, Hyper(low=0.0).check(call, f"{name}[1]", number))


@optimizer(
    references="`optax.contrib.dog` (the three `init_step` modes, L2 with mask)",
    learning_rate=LEARNING_RATE, init_step=InitStep(), eps=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY, mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """DoG, distance over gradients (Ivgi et al.), as ``optax.contrib.dog``.

    Update (``t`` from 1, x_0 the params given to ``init``)::

      g_t = ∇f(x_t) + λ x_t                              (L2, if weight_decay)
      r̄_t = max(r̄_{t-1}, ||x_t - x_0||),   G_t = G_{t-1} + ||g_t||²
      x_{t+1} = x_t - η_t · r̄_t / sqrt(G_t + eps) · g_t

    (norms over the whole tree).  ``init_step = (tag, value)`` sets the first
    step: ``"heuristic"`` r̄_0 = value · (1 + ||x_0||) (1e-6, or 1e-4 with batch
    norm, say the authors), ``"distance"`` r̄_0 = value, ``"learning_rate"``
    the first step size is ``value``.  ``learning_rate`` multiplies the DoG
    step (1.0, or a schedule).

    Chain: ``add_l2 → scale_by_distance_over_gradients(init_step, eps) →
    scale_by_learning_rate``.

    Differences: equals ``optax.contrib.dog``.  ``init_step`` is a static
    option (its value sets r̄_0 in the state at ``init``, or the first step);
    the other numbers are kept in state.  A mask given as a function goes in
    ``mask_fn`` (optax takes either in ``mask``).  The authors recommend
    averaging the iterates; that is not part of the update.  Where G_t + eps
    and the gradient are 0 (``eps = 0``, only zero gradients so far) the step
    is 0 (optax's ``r̄/0 · 0`` gives NaN); a non-zero gradient whose square
    underflows to 0 gives ±∞, as in optax.

    Args:
      learning_rate: multiplier of the DoG step, a number or schedule.
      init_step: ``(tag, value)``, see above.
      eps: added under the root of G_t.
      weight_decay: λ of the L2 term added to the gradient (``None``: none).
      mask: which leaves are decayed, a pytree of bools or a prefix of the params.
      mask_fn: a function of the params returning ``mask``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.dog(init_step=("distance", 0.5))
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> state = opt.init(params)  # the real initial params: x_0 and r̄_0 come from them
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)  # (6, 8), of norm 10
      >>> updates, state = opt.update(grads, state, params)
      >>> updates["w"]  # r̄_1 = r̄_0 = 0.5, G_1 = 100: a step of length 0.5 along -g
      Array([-0.3, -0.4], dtype=float32)

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free
      Dynamic Step Size Schedule", ICML 2023 (arXiv:2302.12022).
    """
    tag, value = init_step
    return descent(
        scale_by_distance_over_gradients(tag, value, eps),
        learning_rate=learning_rate, weight_decay=weight_decay, mask=mask, mask_fn=mask_fn,
    )  # fmt: skip


@optimizer(
    references="`optax.contrib.dowg` (L2 with mask)",
    learning_rate=LEARNING_RATE, init_estim_sq_dist=Hyper(low=0.0, nullable=True, init_only=True),
    eps=NON_NEGATIVE, weight_decay=WEIGHT_DECAY, mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """DoWG, distance over weighted gradients (Khaled et al.), as ``optax.contrib.dowg``.

    Update (``t`` from 1, x_0 as in ``dog``)::

      g_t = ∇f(x_t) + λ x_t                              (L2, if weight_decay)
      r̄²_t = max(r̄²_{t-1}, ||x_t - x_0||²),   v_t = v_{t-1} + r̄²_t ||g_t||²
      x_{t+1} = x_t - η_t · r̄²_t / (sqrt(v_t) + eps) · g_t

    (norms over the whole tree; r̄²_0 = ``init_estim_sq_dist``, or ``eps``).

    Chain: ``add_l2 → scale_by_distance_over_weighted_gradients(init_estim_sq_dist,
    eps) → scale_by_learning_rate``.

    Differences: equals ``optax.contrib.dowg``.  A mask given as a function
    goes in ``mask_fn`` (optax takes either in ``mask``).  Where
    sqrt(v_t) + eps is 0 and r̄²_t or the gradient is 0 (``eps = 0`` and its
    default r̄²_0, or only zero gradients so far) the step is 0 (optax's
    ``0 / 0`` gives NaN); a non-zero gradient whose square underflows to 0
    is scaled by the largest number of the narrowest leaf dtype (a huge step;
    optax's is ±∞).

    Args:
      learning_rate: multiplier of the DoWG step, a number or schedule.
      init_estim_sq_dist: r̄²_0, the initial guess of the squared distance to
        the solution (``None``: ``eps``).
      eps: added to the root of v_t (and r̄²_0's default, read by ``init``: a
        later ``set_hyperparams`` changes only the root's term).
      weight_decay, mask, mask_fn: the L2 term and the leaves it decays, as in ``dog``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.dowg()  # r̄²_0 = eps = 1e-4
      >>> params = {"w": jnp.array([1.0])}
      >>> updates, _ = opt.update({"w": jnp.array([2.0])}, opt.init(params), params)
      >>> # v_1 = 1e-4 · 2² and sqrt(v_1) = 0.02: the step is 1e-4 / (0.02 + 1e-4) · 2
      >>> updates["w"]  # = 0.01 / 1.005, about sqrt(r̄²_0): the first step's length
      Array([-0.00995025], dtype=float32)

    References:
      Khaled, Mishchenko & Jin, "DoWG Unleashed: An Efficient Universal
      Parameter-Free Gradient Descent Method", NeurIPS 2023 (arXiv:2305.16284).
    """
    return descent(
        scale_by_distance_over_weighted_gradients(init_estim_sq_dist, eps),
        learning_rate=learning_rate, weight_decay=weight_decay, mask=mask, mask_fn=mask_fn,
    )  # fmt: skip
