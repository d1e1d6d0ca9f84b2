"""SparseAdam: Adam's lazy variant for gradients with few entries (embedding tables)."""

from __future__ import annotations

import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.lazy import lazy
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    references="`torch.optim.SparseAdam` (sparse COO gradients, maximize)",
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE.schedulable(),
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
    maximize=Flag(),
)
def sparse_adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """Lazy Adam, as ``torch.optim.SparseAdam``: only the entries of the gradient move.

    Update (``t`` from 1, on the elements where ``g_t ≠ 0``; elsewhere ``m``,
    ``v`` and ``θ`` keep their values)::

      m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) g_t²
      θ_t = θ_{t-1} - η_t · sqrt(1 - b2^t) / (1 - b1^t) · m_t / (sqrt(v_t) + eps)

    ``t`` counts every update, also those in which an element had no entry
    (torch's ``step``), so an element's moments are corrected as if it had
    seen every step.  ``eps`` is added to the uncorrected ``sqrt(v_t)`` (the
    paper's efficient form, as torch's SparseAdam; ``adam`` adds it after the
    correction).  On gradients without zeros this is Adam with ``eps``
    replaced by ``eps / sqrt(1 - b2^t)``, and with ``eps = 0`` it is ``adam``.

    Chain: ``lazy(add_momentum(b1, ema=True) → scale_by_rms(b2, eps)) →
    bias_correct(b1) → scale_by_learning_rate(k ↦ η_k sqrt(1 - b2^{k+1}))``
    (after ``scale(-1)`` for ``maximize``).

    Differences: torch needs gradients with a sparse layout and updates the
    elements stored in them (after summing duplicate indices); JAX's
    gradients are dense, so here the entries are the non-zero elements.  An
    entry whose value is exactly zero (stored explicitly, or duplicates that
    cancel) moves torch's moments towards zero and stays still here.  Under
    an embedding lookup rows never looked up agree; a looked-up row is stored
    whole by torch, so its elements whose gradient is zero (after a ReLU or
    dropout) move on momentum in torch and stay still here.
    torch rejects complex parameters and requires ``learning_rate > 0`` and
    ``eps > 0``; here complex ones work as in ``adam`` and zeros are allowed
    (a coordinate with ``v = 0`` and ``eps = 0`` takes no step).  torch's
    SparseAdam has no implementation flags (``foreach``, ``fused``, ...) to
    map; optax has no SparseAdam.  torch forms each moment as ``m + (1 - b)(g
    - m)``, which cancels where ``b`` is near 0 and the gradient falls: with
    ``b2 = 0`` its ``v`` loses ``g²`` (to 0 where ``g²`` is below ``v``'s
    rounding) and the step jumps by ``η/eps``; here ``b v + (1 - b) g²`` keeps
    ``v = g²``.  Elsewhere the two forms agree to rounding (≤ 1e-10 in the
    tests).

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1), a number or schedule.
      b2: second-moment decay in [0, 1).
      eps: added to ``sqrt(v_t)``.
      maximize: ascend the objective instead (torch's).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.sparse_adam(0.1)
      >>> table = jnp.ones((3, 2))
      >>> state = opt.init(table)
      >>> grads = jnp.zeros((3, 2)).at[1].set(0.5)  # only row 1 was looked up
      >>> updates, state = opt.update(grads, state, table)
      >>> (updates != 0).any(axis=1)  # rows 0 and 2: no step, their moments kept
      Array([False,  True, False], dtype=bool)
      >>> updates[1]  # Adam's first step, -η sign(g) (up to eps)
      Array([-0.09999994, -0.09999994], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
      (Algorithm 1 and the efficient form after it).
    """

    def step_size(k):
        lr = _dtypes.as_float(learning_rate)
        decay = jnp.asarray(b2).astype(lr.dtype)
        return lr * jnp.sqrt(_numerics.bias_correction(decay, _numerics.safe_increment(k)))

    return chain(
        *gradient_stages(maximize=maximize),
        lazy(chain(add_momentum(b1, ema=True), scale_by_rms(b2, eps))),
        bias_correct(b1),
        scale_by_learning_rate(step_size),
    )
