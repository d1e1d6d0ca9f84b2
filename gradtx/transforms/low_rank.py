"""Low-rank gradient projection (GaLore): an inner optimizer run on projected matrices."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import chain
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DType
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Option
from gradtx._specs import Transform
from gradtx.transforms._adam import adam_stages
from gradtx.wrappers.groups import MaskedNode


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a leaf form the rows (``reduction_axis``) and the columns
    (``output_axis``) of the matrix GaLore projects; optax's spelling, whose
    instances are accepted too."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def _is_numbers(x: Any) -> bool:
    return hasattr(x, "reduction_axis") and hasattr(x, "output_axis")


class DimensionNumbers(Option):
    """``None``, a function of the params, or a pytree (a prefix of the params) whose
    leaves are dimension numbers or ``None``."""

    def check(self, call: str, name: str, value: Any) -> Any:
        if value is None or (callable(value) and not _is_numbers(value)):
            return value
        for x in jax.tree.leaves(value, is_leaf=_is_numbers):
            if not _is_numbers(x):
                raise TypeError(
                    f"{call}({name}=...): expected GaLoreDimensionNumbers (or optax's), None, "
                    f"or a pytree of them, got {x!r}"
                )
            for axes in (x.reduction_axis, x.output_axis):
                listed = axes if isinstance(axes, (tuple, list)) else [axes]
                if not all(isinstance(a, int) and not isinstance(a, bool) for a in listed):
                    raise TypeError(f"{call}({name}={x!r}): axes must be ints or tuples of ints")
        return value


class ScaleByGaloreState(NamedTuple):
    """``projector``: per leaf, the orthonormal basis P (``MaskedNode()`` for leaves
    left whole); ``base_state``: the inner optimizer's state, on the projected
    (low-rank) gradients."""

    projector: Any
    base_state: OptState


class _Layout(NamedTuple):
    """How one leaf is viewed as an (m, n) matrix, and which side is projected."""

    order: tuple[int, ...]  # transpose to (rows..., columns...)
    shape: tuple[int, ...]  # the transposed shape
    m: int
    n: int
    rank: int
    left: bool  # m >= n: P is (m, r) and the projection P^T G is (r, n)

    def matrix(self, x: jax.Array) -> jax.Array:
        return x.transpose(self.order).reshape(self.m, self.n)

    def leaf(self, x: jax.Array) -> jax.Array:
        inverse = tuple(sorted(range(len(self.order)), key=self.order.__getitem__))
        return x.reshape(self.shape).transpose(inverse)


def _axes(call: str, value: Any, ndim: int) -> tuple[int, ...]:
    axes = (value,) if isinstance(value, int) else tuple(value)
    if not all(isinstance(a, int) and -ndim <= a < ndim for a in axes):
        raise ValueError(f"{call}: axes {value!r} do not fit a leaf of {ndim} dimensions")
    return tuple(a % ndim for a in axes)


def _layout(call: str, shape: tuple[int, ...], numbers: Any, rank: int) -> _Layout:
    if len(shape) < 2:
        raise ValueError(f"{call}: GaLore projects leaves of rank >= 2, got shape {shape}")
    rows = _axes(call, numbers.reduction_axis, len(shape))
    columns = _axes(call, numbers.output_axis, len(shape))
    if sorted(rows + columns) != list(range(len(shape))):
        raise ValueError(
            f"{call}: reduction axes {rows} and output axes {columns} must split the "
            f"axes of shape {shape}, each axis on one side"
        )
    m = math.prod(shape[a] for a in rows)
    n = math.prod(shape[a] for a in columns)
    order = rows + columns
    transposed = tuple(shape[a] for a in order)
    return _Layout(order, transposed, m, n, min(rank, m, n), m >= n)


def _numbers(call: str, spec: Any, params: Any) -> list:
    """Per leaf (``jax.tree.leaves`` order): dimension numbers, or None (left whole)."""
    leaves = jax.tree.leaves(params)
    if spec is None:
        return [GaLoreDimensionNumbers() if jnp.ndim(p) == 2 else None for p in leaves]
    if callable(spec) and not _is_numbers(spec):
        spec = DimensionNumbers().check(call, "weight_dimension_numbers", spec(params))
    if _is_numbers(spec):
        return [spec if jnp.ndim(p) >= 2 else None for p in leaves]
    try:
        full = jax.tree.broadcast(spec, params, is_leaf=lambda x: x is None or _is_numbers(x))
    except ValueError as err:
        raise ValueError(
            f"{call}(weight_dimension_numbers=...): not a prefix of the params ({err})"
        ) from None
    return jax.tree.leaves(full, is_leaf=lambda x: x is None or _is_numbers(x))


@factory(counted=True, rank=Int(1), update_proj_gap=Int(1), scale=Hyper(),
         base_optimizer=Transform(optional=True), weight_dimension_numbers=DimensionNumbers(),
         svd_dtype=DType(wide=True))  # fmt: skip
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: optax.GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
    *,
    svd_dtype: DTypeLike = jnp.float32,
) -> GradientTransformation:
    """Run ``base_optimizer`` on low-rank projections of the matrix gradients.

    Each projected leaf is viewed as an (m, n) matrix G_t.  Every
    ``update_proj_gap`` steps (from the first) its basis is renewed from the
    SVD of the current gradient, ``r = min(rank, m, n)``::

      m ≥ n:  P_t = U[:, :r] of G_t,   R_t = P_t^T G_t,   out = scale · P_t B(R_t)
      m < n:  P_t = V[:, :r] of G_t,   R_t = G_t P_t,     out = scale · B(R_t) P_t^T

    where B is ``base_optimizer`` (its state lives on the (r, n) or (m, r)
    projections, the memory saving).  Leaves that are not projected pass
    through B whole.  B gets no params, so it must be a scaling rule
    (``scale_by_adam``-like), not one with weight decay.

    Args:
      rank: the largest rank kept (static).
      update_proj_gap: steps between renewals of the bases (static).
      scale: multiplies the output.
      base_optimizer: B (gradtx or optax); ``None``: optax's ``scale_by_adam()``.
      weight_dimension_numbers: which leaves are projected and how they form
        a matrix: ``None`` (the 2-D leaves, rows along axis 0); one
        ``GaLoreDimensionNumbers`` (every leaf of rank >= 2); a pytree of them
        (a prefix of the params, ``None`` for a leaf left whole); or a function
        of the params returning either.
      svd_dtype: the dtype the SVD runs in (optax's float32; ``None``: the
        gradient's; a complex dtype names its parts' precision).  The basis is
        stored in the statistics' dtype.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_galore(rank=1, base_optimizer=gradtx.identity())
      >>> g = jnp.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # rank 2
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out  # the rank-1 part along the largest singular vector
      Array([[3., 0.],
             [0., 0.],
             [0., 0.]], dtype=float32)

    References:
      Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
      Projection", ICML 2024 (arXiv:2403.03507).
    """
    call = current_call("gradtx.scale_by_galore")
    _tree.check_per_leaf(call, "gradtx.scale_by_galore")
    base = chain(*adam_stages(0.9, 0.999, 1e-8, 0.0)) if base_optimizer is None else base_optimizer

    def layouts(params: Any) -> list:
        numbers = _numbers(call, weight_dimension_numbers, params)
        return [
            None if d is None else _layout(call, jnp.shape(p), d, rank)
            for p, d in zip(jax.tree.leaves(params), numbers, strict=True)
        ]

    def init(params):
        # An SVD basis of a complex matrix needs conjugate transposes and a complex SVD
        # (optax's casts to float32, dropping the imaginary part): refused.
        _update_checks.check_real(call, params, "the projections are real SVD bases")
        leaves, treedef = jax.tree.flatten(params)
        projectors, proxies = [], []
        for p, lay in zip(leaves, layouts(params)):
            dtype = _dtypes.compute_dtype(p.dtype)
            if lay is None:
                # No array: orbax refuses zero-size ones, Flax gives every state entry
                # its param's sharding annotation (a bias's P("model") on a 0-D or a
                # (1,) placeholder failed on a mesh), and zeros of the leaf's shape
                # would cost a copy of every leaf left whole.
                projectors.append(MaskedNode())
                proxies.append(jnp.zeros_like(p))
            else:
                side = lay.m if lay.left else lay.n
                projectors.append(jnp.zeros((side, lay.rank), dtype))
                low = (lay.rank, lay.n) if lay.left else (lay.m, lay.rank)
                proxies.append(jnp.zeros(low, dtype))
        return ScaleByGaloreState(
            treedef.unflatten(projectors), base.init(treedef.unflatten(proxies))
        )

    def update(updates, state, params=None, **extra):
        leaves, treedef = jax.tree.flatten(updates)
        count = step_count(extra, call)
        renew = count % update_proj_gap == 0
        projectors, bases, low = [], [], []
        lays = layouts(updates)
        # cut at the updates' leaves, so that the leaves an enclosing masked or partition
        # hides (a MaskedNode in both trees) are passed over; a MaskedNode met here is a
        # leaf left whole
        for g, kept, lay in zip(leaves, treedef.flatten_up_to(state.projector), lays):
            if lay is None:
                projectors.append(kept)
                bases.append(None)
                low.append(g)
                continue
            # Whole (off explicit mesh axes) before the reshape, which cannot merge a
            # split axis into another: an SVD needs the matrix in one piece, and the
            # projections are small; the step goes back on the leaf's sharding.  The
            # basis is whole too, and is stored on the sharding it came with (Flax
            # annotates it as its param).
            matrix = lay.matrix(_tree.replicated(g)).astype(kept.dtype)
            basis = _new_basis(lay.rank, lay.left, svd_dtype, jnp.dtype(g.dtype))
            p = jax.lax.cond(renew, basis, _kept_basis, matrix, _tree.replicated(kept))
            projectors.append(_tree.sharded_like(p, kept))
            bases.append(p)
            low.append(p.T @ matrix if lay.left else matrix @ p)
        # B sees projections, not the params or the chain's grads; the count serves a
        # default B built here (a B with its own factory keeps its own count).
        low_tree = treedef.unflatten(low)
        steps, base_state = base.update(low_tree, state.base_state, None, count=count)
        out = []
        for g, p, s, lay in zip(leaves, bases, jax.tree.leaves(steps), lays):
            if lay is None:
                out.append(s)
                continue
            full = p @ s if lay.left else s @ p.T
            step = (_tree.scalar_like(scale, full) * lay.leaf(full)).astype(g.dtype)
            out.append(_tree.sharded_like(step, g))
        return treedef.unflatten(out), ScaleByGaloreState(treedef.unflatten(projectors), base_state)

    return GradientTransformation(init, update)


# Module-level branches, one per configuration: a conditional finds its compiled
# branches again by their identity, so an eager step compiles them once.


@functools.cache
def _new_basis(rank: int, left: bool, svd_dtype: Any, grad_dtype: Any) -> Callable:
    def basis(matrix: jax.Array, p: jax.Array) -> jax.Array:
        # a complex svd_dtype names a precision, as for statistics (the leaves are real)
        if svd_dtype is not None:
            matrix = matrix.astype(_dtypes.state_dtype(matrix.dtype, svd_dtype))
        # LAPACK's SVD on CPU never returns for a matrix holding an inf (one it
        # holds NaN returns NaN): the basis goes NaN, as other optimizers' steps do
        matrix = jnp.where(jnp.all(jnp.isfinite(matrix)), matrix, jnp.nan)
        u, _, vh = jnp.linalg.svd(matrix, full_matrices=False)
        new = u[:, :rank] if left else vh[:rank].T
        # optax rounds the basis to the gradient's dtype; statistics of 16-bit leaves
        # are kept in float32 here.
        return new.astype(grad_dtype).astype(p.dtype)

    return basis


def _kept_basis(matrix: jax.Array, p: jax.Array) -> jax.Array:
    return p
