"""Division by the root of an EMA of each leaf's squared gradient norm (NovoGrad)."""

from __future__ import annotations

import collections
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class ScaleByLayerwiseNormState(NamedTuple):
    """``nu``: a vector with one entry per leaf (``jax.tree.leaves`` order),
    ``v_t = decay · v_{t-1} + (1 - decay) ‖g_t‖²`` (``v_1 = ‖g_1‖²``), the EMA of
    the leaf's squared gradient norm.  One vector, not a params-shaped tree of
    scalars: it is not sharded like the params (``optax.tree_utils.tree_map_params``
    gives it a replicated spec)."""

    nu: Any


@factory(counted=True, decay=DECAY_RATE, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE, dtype=DType())
def scale_by_layerwise_norm(
    decay: float = 0.25, eps: float = 1e-6, *, eps_root: float = 0.0, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Divide each leaf by the root of an EMA of its squared gradient norm.

    For each leaf (a layer's weight or bias), with ``g_t`` its gradient (the
    chain's ``grads``) and ``‖·‖`` the Frobenius norm over the whole leaf::

      v_1 = ‖g_1‖²,   v_t = decay · v_{t-1} + (1 - decay) ‖g_t‖²
      out = updates / (sqrt(v_t + eps_root) + eps)

    NovoGrad's layer-wise second moment (Ginsburg et al.): one number per leaf
    instead of one per coordinate, so the state is a scalar per leaf and the
    step keeps each layer's gradient direction.  The first step starts from
    ``‖g_1‖²`` (no bias correction), as the paper and ``optax.scale_by_novograd``.
    ``v`` is computed in at least float32 and stored in ``dtype`` (by default
    the widest of the leaves' second-moment dtypes: float32 for 16-bit params,
    whose range a sum of squares soon exceeds).

    It needs each leaf's shape, so it refuses to run inside ``gradtx.flatten``.

    Args:
      decay: NovoGrad's b2, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      dtype: storage dtype of ``v`` (``None``: the params' real dtype, float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_layerwise_norm(eps=0.0)
      >>> g = {"w": jnp.array([[3.0, 0.0], [0.0, -4.0]]), "b": jnp.array([0.5])}
      >>> out, state = tx.update(g, tx.init(g))
      >>> out["w"].tolist(), out["b"].tolist()  # ‖w‖ = 5, ‖b‖ = 0.5
      ([[0.6000000238418579, 0.0], [0.0, -0.800000011920929]], [1.0])

    References:
      Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive
      Moments for Training of Deep Networks", arXiv:1905.11286, 2019.
    """
    call = current_call("gradtx.scale_by_layerwise_norm")

    def storage(params):
        kinds = [_dtypes.square_dtype(jnp.result_type(p), dtype) for p in jax.tree.leaves(params)]
        out = jnp.dtype(jnp.float32) if dtype is None else _dtypes.real_dtype(dtype)
        for kind in kinds if dtype is None else ():
            out = _dtypes.wider(out, kind)
        return out

    def init(params):
        return ScaleByLayerwiseNormState(jnp.zeros([len(jax.tree.leaves(params))], storage(params)))

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(call, "gradtx.scale_by_layerwise_norm")
        first = step_count(extra, call) == 0
        leaves, treedef = jax.tree.flatten(updates)
        grads = jax.tree.leaves(gradient(updates, extra))
        store = state.nu.dtype

        if not grads:
            return updates, state

        def square_norm(g):
            return jnp.sum(_tree.abs_sq(g.astype(_dtypes.compute_dtype(store, g.dtype))))

        # The per-leaf scalars as vectors: one kernel for them all, where XLA would
        # otherwise copy them into each leaf's kernel (compile time).  Each sum is in its
        # leaf's dtype as before; the EMA is in the widest, the same where leaves agree.
        squares = [square_norm(g) for g in grads]
        real = jnp.result_type(*squares)
        sq = jnp.stack([x.astype(real) for x in squares])
        nu = jnp.where(first, sq, _numerics.ema(decay, state.nu.astype(real), sq)).astype(store)
        v = nu.astype(real)
        denom = _numerics.safe_sqrt(v + _tree.scalar_like(eps_root, v))
        denom = denom + _tree.scalar_like(eps, denom)

        def scale(u, d):
            wide = _dtypes.compute_dtype(u.dtype, d.dtype)
            return _numerics.div0(u.astype(wide), d.astype(wide)).astype(u.dtype)

        # A leaf whose shape another leaf shares reads its entry as its own buffer (see
        # _entries); a leaf of a shape of its own has a kernel of its own anyway.
        kinds = collections.Counter((u.shape, u.dtype) for u in leaves)
        shared = [i for i, u in enumerate(leaves) if kinds[u.shape, u.dtype] > 1]
        split = _control.once(_entries, denom[np.asarray(shared, int)]) if shared else ()
        entries = dict(zip(shared, split))
        out = [scale(u, entries[i] if i in entries else denom[i]) for i, u in enumerate(leaves)]
        return treedef.unflatten(out), ScaleByLayerwiseNormState(nu)

    return GradientTransformation(init, update)


def _entries(vector: jax.Array) -> tuple[jax.Array, ...]:
    """The vector's entries as separate scalars, split in ``_control.once``: a leaf's kernel
    that sliced entry ``i`` itself held ``i`` as a constant, so no two leaves' kernels were
    alike and XLA compiled each one (it compiles a kernel once for all identical
    fusions); as separate buffers, leaves of one shape share one kernel.  Each split costs
    a small kernel of its own, so only leaves of a shared shape are split."""
    return tuple(vector[i] for i in range(vector.shape[0]))
