"""Newton-Schulz orthogonalisation of matrix updates, and Muon's shape scaling (Muon)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType
from jax.sharding import PartitionSpec
from jax.typing import DTypeLike

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx._specs import Int

DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""Jordan's quintic coefficients (torch's and optax's default)."""


class NsCoefficients(Hyper):
    """A triple ``(a, b, c)`` or a table of triples (one per iteration), stored as an array."""

    def check(self, call, name, value):
        kind = f"{name} must be a triple (a, b, c) of numbers or a tuple of such triples"
        if isinstance(value, np.ndarray):  # optax takes one: its numbers, as a tuple's
            value = value.tolist()
        if isinstance(value, jax.Array):  # bound: used as given
            shape = value.shape
            if not (shape == (3,) or (len(shape) == 2 and shape[1] == 3 and shape[0] > 0)) or (
                not jnp.issubdtype(value.dtype, jnp.floating)
            ):
                raise TypeError(f"{call}({name}=...): {kind}, got an array of shape {shape}")
            if _checks.is_known(value):  # its numbers checked as a tuple's are; it stays bound
                self.check(call, name, np.asarray(value, np.float64).tolist())
            return value
        if not isinstance(value, (tuple, list)):
            super().check(call, name, value)  # NaN, strings, callables: their own errors
            raise TypeError(f"{call}({name}={value!r}): {kind}")
        table = bool(value) and all(isinstance(row, (tuple, list)) for row in value)
        rows = []
        for r, row in enumerate(value if table else [value]):
            if not isinstance(row, (tuple, list)) or len(row) != 3:
                raise TypeError(f"{call}({name}={value!r}): {kind}")
            at = f"{name}[{r}]" if table else name  # the element that is wrong is named
            rows.append(tuple(Hyper().check(call, f"{at}[{i}]", x) for i, x in enumerate(row)))
        return tuple(rows) if table else rows[0]


NS_COEFFICIENTS = NsCoefficients()


def matrix_leaves(call: str, what: str, tree: Any, hint: str = "") -> None:
    """Raise a ValueError naming the first leaf of ``tree`` that is not a matrix."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.ndim(leaf) != 2:
            who = what if call == what else f"{call}: {what}"
            raise ValueError(
                f"{who} acts on matrices, but the leaf "
                f"{jax.tree_util.keystr(path) or '(root)'} has shape {jnp.shape(leaf)}.{hint}"
            )


def _gram_sharding(x: jax.Array) -> PartitionSpec | None:
    """Replicated, where ``x`` is sharded on an explicit mesh: ``x xᴴ`` contracts the
    sharded axis, and JAX then asks for the output's sharding (a small square matrix)."""
    mesh = getattr(jax.typeof(x).sharding, "mesh", None)
    if mesh is None or mesh.empty or AxisType.Explicit not in mesh.axis_types:
        return None
    return PartitionSpec()


PAIRING = (
    " Give other leaves to another optimizer: gradtx.partition({'muon': gradtx.muon(...), "
    "'adamw': gradtx.adamw(...)}, labels_fn=lambda p: jax.tree.map(lambda x: 'muon' if "
    "x.ndim == 2 else 'adamw', p)), or use gradtx.muon(..., convention='optax'), which "
    "sends them to AdamW."
)


@factory(ns_coefficients=NS_COEFFICIENTS, ns_steps=Int(0), eps=Hyper(low=0.0),
         eps_mode=Choice("floor", "add"), adaptive=Flag(), dtype=DType())  # fmt: skip
def orthogonalize(
    ns_coefficients: Any = DEFAULT_NS_COEFFICIENTS,
    ns_steps: int = 5,
    eps: float = 1e-7,
    *,
    eps_mode: str = "floor",
    adaptive: bool = False,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Replace each matrix of the updates by a Newton-Schulz approximation of its polar factor.

    For a leaf ``M`` (transposed first if it has more rows than columns)::

      X_0 = M / max(‖M‖_F, eps)            (eps_mode="floor", torch)
      X_0 = M / (‖M‖_F + eps)              (eps_mode="add", optax)
      A_k = X_k X_kᴴ,   X_{k+1} = a X_k + (b A_k + c A_k²) X_k

    ``ns_steps`` times (or once per row of a table of triples, as optax).
    Jordan's coefficients maximise the slope at 0: the singular values of
    the result land near 1 (in about [0.7, 1.2]) rather than exactly on it,
    which is all Muon needs; ``(1.5, -0.5, 0)`` (the cubic iteration)
    converges to the polar factor ``UVᵀ`` itself.  With ``adaptive`` (optax)
    the result ``O`` is scaled by ``⟨M, O⟩`` (Bernstein & Newhouse).

    Leaves must be 2-D (an error names the first one that is not).  The
    iteration runs in ``dtype`` (``None``: the leaf's dtype, at least
    float32; torch runs it in bfloat16).  It needs each leaf's shape, so it
    refuses to run inside ``gradtx.flatten``.

    Args:
      ns_coefficients: ``(a, b, c)``, or a table of triples, one per iteration.
      ns_steps: iterations (with a table: at least its rows, which are run).
      eps: guards the normalisation of a zero matrix.
      eps_mode: ``"floor"`` (torch) or ``"add"`` (optax), see above.
      adaptive: scale by ``⟨M, O⟩`` (optax's ``adaptive``).
      dtype: the dtype of the iteration; for a complex leaf a real dtype names the
        precision (float64: complex128, others complex64), for a real leaf a
        complex one names its parts' (complex64: float32).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.orthogonalize((1.5, -0.5, 0.0), ns_steps=30)
      >>> m = jnp.array([[3.0, 0.0], [0.0, 0.5]])
      >>> tx.update(m, tx.init(m))[0].round(4)  # the polar factor of a diagonal matrix
      Array([[1., 0.],
             [0., 1.]], dtype=float32)

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024;
      Bernstein & Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
    """
    call = current_call("gradtx.orthogonalize")
    if isinstance(ns_coefficients, tuple) and isinstance(ns_coefficients[0], tuple):
        if len(ns_coefficients) > ns_steps:
            raise ValueError(
                f"{call}(ns_coefficients=..., ns_steps={ns_steps}): a table of "
                f"{len(ns_coefficients)} triples needs ns_steps >= {len(ns_coefficients)}"
            )

    def init(params):
        _tree.check_per_leaf(call, "gradtx.orthogonalize")
        matrix_leaves(call, "gradtx.orthogonalize", params, PAIRING)
        return EmptyState()

    def update(updates, state, params=None, **extra):
        who = current_call("gradtx.orthogonalize")
        _tree.check_per_leaf(who, "gradtx.orthogonalize")
        matrix_leaves(who, "gradtx.orthogonalize", updates, PAIRING)
        coefficients = jnp.asarray(ns_coefficients)
        if coefficients.ndim == 1:
            coefficients = jnp.broadcast_to(coefficients, (ns_steps, 3))

        def one(m):
            # A real dtype for a complex leaf names the precision, as for statistics.
            wide = (
                _dtypes.compute_dtype(m.dtype)
                if dtype is None
                else _dtypes.state_dtype(m.dtype, dtype)
            )
            acc = _dtypes.compute_dtype(wide)  # bfloat16 products accumulate in float32

            x = m.astype(wide)
            tall = x.shape[0] > x.shape[1]
            x = x.T if tall else x
            real = _dtypes.real_dtype(acc)
            norm = _numerics.safe_sqrt(jnp.sum(jnp.real(_tree.abs_sq(x.astype(acc))).astype(real)))
            e = jnp.asarray(eps).astype(real)
            norm = jnp.maximum(norm, e) if eps_mode == "floor" else norm + e
            x = _numerics.div0(x, norm.astype(wide))

            # A loop, not an unrolled chain: XLA compiles one iteration per leaf
            # instead of ns_steps copies, and the matmuls dominate the step anyway.
            x, _ = jax.lax.scan(_newton_schulz_step(jnp.dtype(wide), acc), x, coefficients)
            x = x.T if tall else x
            if adaptive:
                x = jnp.sum(m.astype(wide).conj() * x) * x
            return x.astype(m.dtype)

        return jax.tree.map(one, updates), state

    return GradientTransformation(init, update)


@functools.cache
def _newton_schulz_step(wide: Any, acc: Any) -> Callable:
    """One iteration, in ``wide`` with products accumulated in ``acc``: one function per
    pair of dtypes, so that ``lax.scan`` finds its compiled loop again on an eager step."""

    def mm(p, q, out_sharding=None):
        return jnp.matmul(p, q, preferred_element_type=acc, out_sharding=out_sharding)

    def iteration(x, row):
        # each step rounds to ``wide`` once, as torch's addmm does
        a, b, c = (row[i].astype(acc) for i in range(3))
        gram = mm(x, x.conj().T, _gram_sharding(x)).astype(wide)
        poly = (b * gram.astype(acc) + c * mm(gram, gram)).astype(wide)
        return (a * x.astype(acc) + mm(poly, x)).astype(wide), None

    return iteration


@factory(consistent_rms=Hyper(low=0.0, nullable=True), layout=Choice("in_out", "out_in"))
def scale_by_shape(
    consistent_rms: float | None = None, *, layout: str = "in_out"
) -> GradientTransformation:
    """Multiply each matrix of the updates by a factor of its shape (Muon's learning-rate scaling).

    With ``fan_in``/``fan_out`` the matrix's input and output sizes:

    * ``consistent_rms=None``: ``sqrt(max(1, fan_out / fan_in))`` (Jordan's
      width scaling; torch's ``adjust_lr_fn="original"``);
    * a number ``r``: ``r · sqrt(max(fan_in, fan_out))`` (Liu et al.'s RMS
      matching; torch's ``"match_rms_adamw"`` is ``r = 0.2``).

    ``layout`` says which axis is which: ``"in_out"`` (flax/optax kernels,
    ``x @ W``: rows are inputs) or ``"out_in"`` (``torch.nn.Linear.weight``:
    rows are outputs).  Leaves must be 2-D; it refuses to run inside
    ``gradtx.flatten``.

    Args:
      consistent_rms: ``None`` or the target RMS factor (optax's name).
      layout: ``"in_out"`` or ``"out_in"``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_shape()  # (in, out) = (2, 8): sqrt(8 / 2) = 2
      >>> tx.update(jnp.ones((2, 8)), tx.init(jnp.ones((2, 8))))[0][0, :3]
      Array([2., 2., 2.], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_shape")
        _tree.check_per_leaf(call, "gradtx.scale_by_shape")
        matrix_leaves(call, "gradtx.scale_by_shape", updates)

        def one(u):
            rows, cols = u.shape
            fan_in, fan_out = (rows, cols) if layout == "in_out" else (cols, rows)
            wide = _dtypes.compute_dtype(u.dtype)
            if consistent_rms is None:
                # max(fan_in, 1): a (0, n) leaf has nothing to scale.
                ratio = fan_out / max(fan_in, 1)
                factor = jnp.asarray(math.sqrt(max(1, ratio)), _dtypes.real_dtype(wide))
            else:
                factor = jnp.asarray(consistent_rms).astype(_dtypes.real_dtype(wide))
                factor = factor * math.sqrt(max(fan_in, fan_out))
            return (u.astype(wide) * factor.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)
