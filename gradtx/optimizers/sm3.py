"""SM3: a memory-efficient Adagrad with per-axis accumulators."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.sm3 import scale_by_sm3


@optimizer(references="`optax.sm3`", learning_rate=NON_NEGATIVE, momentum=DECAY_RATE)
def sm3(learning_rate: float, momentum: float = 0.9) -> GradientTransformation:
    """SM3 (Anil et al.), as ``optax.sm3``: SM3-II's step, averaged, times the learning rate.

    For a leaf with axes ``1..k`` (``μ`` one accumulator per row, column,
    ..., all 0 at first; ``t`` from 1)::

      ν_t = min over the axes of μ_{t-1} + g_t²,   μ_t = max of ν_t along each axis
      m_t = μ m_{t-1} + (1 - μ) g_t / sqrt(ν_t + 1e-8)     (0 where ν_t = 0)
      θ_t = θ_{t-1} - η m_t

    A leaf with one axis (or none) accumulates per element, as Adagrad.

    Chain: ``scale_by_sm3 → add_momentum(momentum, ema=True) →
    scale_by_learning_rate``.

    Differences: optax's signature (``learning_rate`` required and a number,
    not a schedule; eps fixed at 1e-8).  The momentum is an EMA of the
    preconditioned gradient (optax's; the paper's SM3 has none).  optax
    fails on a scalar leaf; here it is one accumulator.  SM3 needs each
    leaf's axes, so ``sm3`` cannot run inside ``gradtx.flatten``.  A NaN in
    one gradient entry makes its row's and column's accumulators NaN: the
    next step is NaN along that row and column, and the one after in the
    whole leaf, since every column's maximum then meets the NaN row (the
    failure shows).  optax's ``0 where not ν > 0`` keeps the NaN at that
    entry only (its momentum holds it) and gives the rest of its row and
    column, then of the leaf, a preconditioned gradient of 0: they stop
    learning without a sign, moved only by the momentum left over.

    Args:
      learning_rate: η ≥ 0 (a number).
      momentum: the EMA rate μ in [0, 1).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.sm3(1.0, momentum=0.0)
      >>> params = {"w": jnp.zeros((2, 2))}
      >>> g1 = {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}
      >>> _, state = opt.update(g1, opt.init(params), params)  # rows' μ (1, 4), columns' (1, 4)
      >>> updates, state = opt.update({"w": jnp.ones((2, 2))}, state, params)
      >>> # ν_2 = min(row, column) + 1 = (2, 2; 2, 5): the zeros of g1 get 1 from the
      >>> # cover (Adagrad's sums: 2, 1; 1, 5); the step is -1 / sqrt(ν_2)
      >>> updates["w"]
      Array([[-0.70710677, -0.70710677],
             [-0.70710677, -0.4472136 ]], dtype=float32)

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization",
      NeurIPS 2019 (arXiv:1901.11150).
    """
    return chain(
        scale_by_sm3(), add_momentum(momentum, ema=True), scale_by_learning_rate(learning_rate)
    )
