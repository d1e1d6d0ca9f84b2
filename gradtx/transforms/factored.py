"""Division by a factored estimate of the gradients' RMS (Adafactor)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx.schedules._common import as_float
from gradtx.schedules._counts import steps_since


class ScaleByFactoredRmsState(NamedTuple):
    """Second-moment statistics, per leaf.

    Attributes:
      nu_row: EMA of the row means of g² (the column axis reduced to size 1),
        for factored leaves; a one-element placeholder for the others (``None``
        with ``factored=False``).
      nu_col: EMA of the column means of g² (the row axis reduced to size 1).
      nu: EMA of g² for the leaves that are not factored; a one-element
        placeholder for the factored ones.

    Each field is a tree like the params whatever the shapes, as optax's
    ``FactoredState``: ``optax.tree_utils.tree_map_params``, which inits on a
    placeholder without shapes, then sees the same structure as the state.
    """

    nu_row: Any
    nu_col: Any
    nu: Any


def factored_axes(
    shape: tuple[int, ...], axes: str, factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """``(row axis, column axis)`` of a factored leaf, or ``None`` for a full second moment.

    ``axes="last"``: the last two axes (torch); ``"largest"``: the two largest,
    the largest being the column axis (optax; ties in ``np.argsort`` order).
    A leaf is factored when it has two or more axes and both chosen axes have
    at least ``min_dim_size_to_factor`` elements.
    """
    if not factored or len(shape) < 2:
        return None
    if axes == "last":
        row, col = len(shape) - 2, len(shape) - 1
    else:
        order = np.argsort(shape)
        row, col = int(order[-2]), int(order[-1])
    if min(shape[row], shape[col]) < min_dim_size_to_factor:
        return None
    return row, col


def _reduced_zeros(p: jax.Array, axis: int, dtype: Any) -> jax.Array:
    """Zeros shaped like ``p`` with ``axis`` reduced to 1, laid out as the reduction of ``p``."""
    like = jax.eval_shape(lambda x: jnp.mean(x, axis=axis, keepdims=True), p)
    return jnp.zeros_like(like, dtype=dtype)


def _lerp(v: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """torch's ``lerp``: ``v + w (target - v)`` for ``w < 1/2``, else ``target + (w - 1)
    (target - v)``, so that ``w = 1`` gives the target exactly (the first form then
    cancels: torch's Adafactor with ``beta2_decay=0`` keeps ``v = g²``, and the first
    form left a falling gradient's ``g²`` to rounding, or 0)."""
    high = weight >= 0.5  # a scalar: one select of the base per element
    out = jnp.where(high, target, v) + jnp.where(high, weight - 1, weight) * (target - v)
    # An overflowed statistic or square gives inf, as β v + w g² does (either form
    # forms inf - inf, NaN, from one of them); a NaN stays NaN (max passes it on).
    return jnp.where(jnp.maximum(v, target) == jnp.inf, jnp.inf, out)


def _mean0(x: jax.Array, axis: int) -> jax.Array:
    """The mean over ``axis`` (kept), 0 where the axis is empty: a (n, 0) leaf keeps a
    zero row statistic, not 0/0 (the update of an empty leaf is empty anyway)."""
    n = max(x.shape[axis], 1)
    return jnp.sum(x, axis, keepdims=True) / jnp.asarray(n, x.dtype)


@factory(counted=True, decay_rate=Hyper(low=0.0), eps=Hyper(low=0.0, nullable=True),
         decay_offset=Hyper(integer=True, optional=True), eps_mode=Choice("floor", "add"),
         axes=Choice("last", "largest"), factored=Flag(), min_dim_size_to_factor=Int(0),
         dtype=DType())  # fmt: skip
def scale_by_factored_rms(
    decay_rate: float = 0.8,
    eps: float | None = None,
    *,
    decay_offset: int = 0,
    eps_mode: str = "floor",
    axes: str = "last",
    factored: bool = True,
    min_dim_size_to_factor: int = 0,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide the updates by a factored estimate of the RMS of the gradients.

    With ``t`` the 1-based step (``t - decay_offset`` in the decay) and
    ``β_t = 1 - (t - decay_offset)^(-decay_rate)``, for a leaf with row axis
    ``r`` and column axis ``c`` (a matrix, or a batch of them)::

      R_t = β_t R_{t-1} + (1 - β_t) mean_c(g²)        (row statistics, nu_row)
      C_t = β_t C_{t-1} + (1 - β_t) mean_r(g²)        (column statistics, nu_col)
      V̂_t = R_t C_t / mean_r(R_t)                      (rank-1 estimate of E g²)

    and ``V̂_t = β_t V̂_{t-1} + (1 - β_t) g²`` (``nu``) for a leaf that is not
    factored (fewer than two axes, ``factored=False``, or axes shorter than
    ``min_dim_size_to_factor``).  The output is ``u / sqrt(V̂_t)``
    (Shazeer & Stern, Alg. 4 and 5).  ``eps`` (ε, ``None``: the leaf's
    machine epsilon) enters in one of two places:

    * ``eps_mode="floor"`` (``torch.optim.Adafactor``'s ``eps1``):
      ``V̂_t = R_t C_t / max(mean_r(R_t), ε)`` and ``u / sqrt(max(V̂_t, ε²))``;
    * ``eps_mode="add"`` (``optax.scale_by_factored_rms``): ε² is added to
      every g² before the averages, so optax's ``epsilon`` is ε² here.

    ``axes`` picks the factored axes: ``"last"`` (torch) or ``"largest"``
    (optax).  ``g`` is the chain's ``grads`` keyword when present, else the
    input.  Statistics are computed in at least float32 and stored in
    ``dtype`` (``None``: the params' dtype, float32 for 16-bit params).  A
    coordinate whose gradient has always been 0 (with ``ε = 0``) takes no step.
    With ``factored=True`` it needs each leaf's shape, so it refuses to run
    inside ``gradtx.flatten``.

    Args:
      decay_rate: the decay exponent, >= 0 (torch's ``-beta2_decay``; optax's
        ``decay_rate``).
      eps: ε, >= 0, in the gradient's units; ``None``: the machine epsilon
        of each leaf's dtype.
      decay_offset: shifts the step of the decay schedule (optax's, meant for
        a restored count); the shifted step is held at 1 until the count
        passes the offset (β_t = 0 there), where optax's ``0^(-decay_rate)``
        makes the step NaN.
      eps_mode: ``"floor"`` (torch) or ``"add"`` (optax), see above.
      axes: ``"last"`` (torch) or ``"largest"`` (optax).
      factored: ``False`` keeps a full second moment for every leaf.
      min_dim_size_to_factor: both factored axes need this many elements
        (0: every leaf of two or more axes, torch's; optax's default is 128).
      dtype: storage dtype of the statistics.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_factored_rms()
      >>> state = tx.init(jnp.zeros((2, 3)))
      >>> u, state = tx.update(jnp.ones((2, 3)), state)
      >>> u  # first step: V̂_1 = g² (up to the rank-1 estimate), so |u| = 1
      Array([[1., 1., 1.],
             [1., 1., 1.]], dtype=float32)
      >>> stats = state.inner_state  # the row and column statistics
      >>> stats.nu_row.shape, stats.nu_col.shape
      ((2, 1), (1, 3))

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
      Memory Cost", ICML 2018.
    """

    def plans(tree):
        return [
            factored_axes(np.shape(p), axes, factored, min_dim_size_to_factor)
            for p in jax.tree.leaves(tree)
        ]

    def init(params):
        leaves, treedef = jax.tree.flatten(params)
        plan = plans(params)
        store = [_dtypes.square_dtype(jnp.result_type(p), dtype) for p in leaves]
        rows = [
            jnp.zeros([1], s) if a is None else _reduced_zeros(p, a[1], s)
            for p, a, s in zip(leaves, plan, store)
        ]
        cols = [
            jnp.zeros([1], s) if a is None else _reduced_zeros(p, a[0], s)
            for p, a, s in zip(leaves, plan, store)
        ]
        full = [
            jnp.zeros([1], s) if a is not None else jnp.zeros_like(p, dtype=s)
            for p, a, s in zip(leaves, plan, store)
        ]
        if not factored:
            return ScaleByFactoredRmsState(None, None, treedef.unflatten(full))
        return ScaleByFactoredRmsState(*(treedef.unflatten(x) for x in (rows, cols, full)))

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_factored_rms")
        if factored:
            _tree.check_per_leaf(call, "gradtx.scale_by_factored_rms(factored=True)")
        rate = jnp.asarray(decay_rate)
        count = step_count(extra, call)
        if decay_offset is None:
            t = count.astype(rate.dtype) + 1
        else:
            # Held at 1 until the count passes the offset, where optax's 0^(-rate) is a NaN
            # step.  count - offset is taken in integers (steps_since), as optax takes it in
            # int32: a float32 count past 2^24 is a multiple of 2 or more, so the shifted
            # steps 2, 3, ... rounded to their neighbours (updates 11x off optax's).  A
            # negative offset only adds to a count that is large already.
            offset = jnp.asarray(decay_offset)
            since = steps_since(count, jnp.maximum(offset, 0)) + as_float(jnp.maximum(-offset, 0))
            t = since.astype(rate.dtype) + 1
        # The EMA as torch's lerp of v towards g² by w = 1 - β_t = t^(-rate) (``_lerp``):
        # w keeps its digits as t grows (1 - β_t formed after rounding β_t loses them:
        # 5% at t = 1e8 in float32), and v rests at g² exactly (β_t v + w g² with β_t
        # rounded apart from w settled ~δ/w away, 3% at t = 1e8).
        rest = t ** (-rate)

        leaves, treedef = jax.tree.flatten(updates)
        grads = treedef.flatten_up_to(gradient(updates, extra))
        rows, cols, full = (
            [None] * len(leaves) if x is None else treedef.flatten_up_to(x) for x in state
        )
        plan = plans(updates)
        # eps=None is the machine epsilon of the params' dtype: the updates of 16-bit
        # params arrive in float32 inside a named optimizer (_build.run_body).
        owns = (
            [g.dtype for g in grads]
            if params is None
            else [p.dtype for p in treedef.flatten_up_to(params)]
        )
        out, new_rows, new_cols, new_full = [], [], [], []
        for u, g, own, row, col, v, axes_ in zip(leaves, grads, owns, rows, cols, full, plan):
            stat = v if axes_ is None else row
            wide = _dtypes.compute_dtype(u.dtype, g.dtype, stat.dtype)
            real = _dtypes.real_dtype(wide)
            a = rest.astype(real)
            e = jnp.asarray(jnp.finfo(_dtypes.real_dtype(own)).eps if eps is None else eps)
            e = e.astype(real)
            sq = jnp.real(_tree.abs_sq(g.astype(wide))).astype(real)
            if eps_mode == "add":
                sq = sq + e * e
            floor = e if eps_mode == "floor" else jnp.zeros([], real)
            if axes_ is None:
                v = _lerp(v.astype(real), sq, a).astype(stat.dtype)
                v_hat = v.astype(real)
            else:
                r_ax, c_ax = axes_
                row = _lerp(row.astype(real), _mean0(sq, c_ax), a)
                col = _lerp(col.astype(real), _mean0(sq, r_ax), a)
                row, col = row.astype(stat.dtype), col.astype(stat.dtype)
                r, c = row.astype(real), col.astype(real)
                mean = jnp.maximum(_mean0(r, r_ax), floor)
                # A mean of 0 has every R_i = 0 (R >= 0), so R C is 0 or NaN there and
                # the guard of 0/0 can be on the scalar (div0's per element compares cost
                # compile time).  XLA may then divide by the scalar as a product with its
                # reciprocal: within an ulp of the quotient (torch's is the quotient).
                v_hat = r * c / jnp.where(mean == 0, jnp.ones_like(mean), mean)
            if eps_mode == "floor":
                v_hat = jnp.maximum(v_hat, floor * floor)
            denom = _numerics.safe_sqrt(v_hat).astype(wide)
            out.append(_numerics.div0(u.astype(wide), denom).astype(u.dtype))
            new_rows.append(row)
            new_cols.append(col)
            new_full.append(v)
        new_state = ScaleByFactoredRmsState(
            *(
                None if old is None else treedef.unflatten(x)
                for old, x in zip(state, (new_rows, new_cols, new_full))
            )
        )
        return treedef.unflatten(out), new_state

    return GradientTransformation(init, update)
