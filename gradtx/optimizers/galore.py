"""GaLore: an optimizer run on low-rank projections of the matrix gradients."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx._specs import Transform
from gradtx.optimizers._stages import descent
from gradtx.transforms.low_rank import DimensionNumbers
from gradtx.transforms.low_rank import scale_by_galore


@optimizer(
    references="`optax.contrib.galore` (rank, gap, scale, base optimizers, dimension numbers)",
    learning_rate=LEARNING_RATE, rank=Int(1), update_proj_gap=Int(1), scale=Hyper(),
    base_optimizer=Transform(optional=True), weight_decay=WEIGHT_DECAY, mask=Mask(),
    weight_dimension_numbers=DimensionNumbers(), mask_fn=Function(), svd_dtype=DType(wide=True),
)  # fmt: skip
def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: optax.GradientTransformation | None = None,
    weight_decay: ScalarOrSchedule | None = 0.0,
    mask: MaskTree | None = None,
    weight_dimension_numbers: Any = None,
    *,
    mask_fn: MaskFn | None = None,
    svd_dtype: DTypeLike = jnp.float32,
) -> GradientTransformation:
    """GaLore (Zhao et al.), as ``optax.contrib.galore``: Adam on low-rank gradients.

    Each matrix gradient G_t (m × n) is projected on a basis P_t of its top
    ``r = min(rank, m, n)`` singular vectors, renewed from the SVD of the
    gradient every ``update_proj_gap`` steps; the base optimizer B (optax's
    ``scale_by_adam()`` by default) runs on the projection and its step is
    mapped back (for m < n the projection is on the right, ``G P``)::

      R_t = P_t^T G_t,     Δ_t = scale · P_t B(R_t)
      θ_t = θ_{t-1} - η_t (Δ_t + λ θ_{t-1})

    B's moments are (r, n) instead of (m, n): the memory saving.  Other leaves
    (1-D ones, by default) go through B whole, not multiplied by ``scale`` (as
    optax's).

    Chain: ``scale_by_galore(rank, update_proj_gap, scale, base_optimizer) →
    decoupled_weight_decay → scale_by_learning_rate``.

    Differences: optax's signature and defaults.  optax's ``mask`` also takes
    a function, here ``mask_fn``.  ``weight_dimension_numbers`` takes gradtx's or
    optax's ``GaLoreDimensionNumbers``.  The SVD runs in float32 as optax's
    (``svd_dtype=None``: the gradient's dtype, for float64 runs); bases and B's
    state of bfloat16 and float16 leaves are kept in float32.  B gets no params:
    give it a scaling rule (``optax.scale_by_adam``, ``gradtx.scale_by_rms``
    chains), and the decay here.  A renewal from a gradient holding an inf
    (or a number beyond float32 with ``svd_dtype`` float32) gives a NaN basis
    and step; optax's never returns there (LAPACK's SVD on CPU loops on an inf).

    Args:
      learning_rate: η, a number or schedule.
      rank: the largest rank kept (static).
      update_proj_gap: steps between renewals of the bases (static).
      scale: multiplies the projected-back step.
      base_optimizer: B (gradtx or optax); ``None``: optax's ``scale_by_adam()``.
      weight_decay: λ, decoupled (``None`` or 0: none).
      mask: pytree of bools (or a prefix): which leaves are decayed.
      weight_dimension_numbers: which leaves are projected, as which matrix
        (see ``scale_by_galore``).
      mask_fn: function of the params returning such a mask.
      svd_dtype: the dtype of the SVD (optax's float32; ``None``: the gradient's;
        a complex dtype names its parts' precision).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.galore(1e-2, rank=2)
      >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
      >>> state = opt.init(params)
      >>> state.inner_state[0].projector["w"].shape  # P: (m, r); Adam's moments are (r, n)
      (4, 2)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"]))(params)
      >>> updates, state = opt.update(grads, state, params)

    References:
      Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
      Projection", ICML 2024 (arXiv:2403.03507).
    """
    return descent(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers,
                        svd_dtype=svd_dtype),
        learning_rate=learning_rate, weight_decay=weight_decay, decoupled=True, mask=mask,
        mask_fn=mask_fn,
    )  # fmt: skip
