"""ASGD: SGD with a decaying step and an averaged iterate."""

from __future__ import annotations

import jax.numpy as jnp

from gradtx import _dtypes
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import STEP
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.averaging import polyak_average
from gradtx.transforms.decay import add_l2
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    references="`torch.optim.ASGD` (lambd, alpha, t0, weight decay, maximize, complex; "
    "params and `ax` every step)",
    learning_rate=LEARNING_RATE, lambd=NON_NEGATIVE, alpha=NON_NEGATIVE, t0=STEP,
    weight_decay=WEIGHT_DECAY, mask=Mask(), mask_fn=Function(), maximize=Flag(),
)  # fmt: skip
def asgd(
    learning_rate: ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
) -> GradientTransformation:
    """Averaged SGD (Polyak & Juditsky), as ``torch.optim.ASGD``.

    Update (``k = t - 1`` the 0-based step, ``η`` = learning_rate, ``λ`` = lambd)::

      g_t  = ∇f(θ_{t-1}) + w θ_{t-1}                      (L2, if weight_decay = w)
      η_k  = η / (1 + λ η k)^alpha                         (η_0 = η)
      θ_t  = θ_{t-1} (1 - λ η_k) - η_k g_t
      μ_k  = 1 / max(1, k - t0)
      ax_t = θ_t  if μ_k = 1,  else  ax_{t-1} + μ_k (θ_t - ax_{t-1})

    The parameters follow SGD with a slowly decaying step; ``ax``, the mean of
    the iterates from step ``t0 + 2`` on (for an integer ``t0``), is the
    estimate ASGD is for.  The averaged params are
    ``optax.tree_utils.tree_get(state, "ax")`` (a tree like the params), or
    ``state.inner_state[-1].ax`` if a params key is itself named ``ax``.

    Chain: ``add_l2(weight_decay) → add_l2(lambd) →
    scale_by_learning_rate(k ↦ η / (1 + λ η k)^alpha) → polyak_average(t0)``
    (after ``scale(-1)`` for ``maximize``).

    Differences: torch keeps ``eta`` and ``mu`` in state, computed at the end
    of each step for the next; here they are functions of the step count and
    the current hyperparameters, which is the same thing while they are
    constant.  Changed mid-run (or scheduled), ``learning_rate`` enters
    ``η_k`` at once; torch's ``eta`` picks up a new ``lr`` one step later,
    and its averaging weight ``mu`` a new ``t0`` (the params are the same;
    the averaged iterate is not).
    torch stores ``eta`` and ``mu`` in its default dtype (float32 unless it is
    float64), so with float64 params it rounds η_k to float32; here they are
    computed at JAX's default float precision.  ``lambd``, ``alpha`` and
    ``t0`` must be ≥ 0 (torch does not check).  optax has no ASGD.  A complex
    parameter works as in torch (every operation is linear in it).  torch's
    ``foreach``, ``capturable`` and ``differentiable`` do not apply: they
    choose how torch runs the same arithmetic (per-tensor loop or fused
    multi-tensor kernels, CUDA-graph capture, autograd through the step);
    here the step is one pure function that ``jax.jit`` compiles and fuses
    and ``jax.grad`` differentiates as it is.

    Args:
      learning_rate: η ≥ 0, the initial step (a number or schedule).
      lambd: λ ≥ 0, the decay of the step and of the weights (torch's ``lambd``).
      alpha: the power of the step's decay, ≥ 0.
      t0: the step after which averaging starts, ≥ 0 (torch's default 1e6).
      weight_decay: w, an L2 term added to the gradient.
      mask, mask_fn: which leaves get the ``weight_decay`` term (a pytree of bools
        or a prefix of the params, or a function of the params returning one);
        ``lambd``'s decay applies to every leaf, as in torch.
      maximize: ascend the objective instead (torch's).

    Example:
      >>> import gradtx, jax.numpy as jnp, optax
      >>> opt = gradtx.asgd(0.1, t0=0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> for _ in range(3):
      ...     updates, state = opt.update(params, state, params)  # f = |θ|² / 2
      ...     params = gradtx.apply_updates(params, updates)
      >>> optax.tree_utils.tree_get(state, "ax")  # the average of the last two iterates
      Array([ 0.7694801, -1.5389602], dtype=float32)

    References:
      Polyak & Juditsky, "Acceleration of stochastic approximation by
      averaging", SIAM J. Control Optim. 1992; Bottou, "Stochastic gradient
      descent tricks", 2012 (the step η_k).
    """

    def step(k):
        lr = _dtypes.as_float(learning_rate)
        lam, power = (jnp.asarray(x).astype(lr.dtype) for x in (lambd, alpha))
        return lr / (1 + lam * lr * k.astype(lr.dtype)) ** power

    return chain(
        *gradient_stages(weight_decay, mask=mask, mask_fn=mask_fn, maximize=maximize),
        add_l2(lambd),
        scale_by_learning_rate(step),
        polyak_average(t0),
    )
