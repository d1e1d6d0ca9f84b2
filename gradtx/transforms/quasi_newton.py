"""The L-BFGS direction: the updates times a limited-memory inverse-Hessian estimate."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import Updates
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Flag
from gradtx._specs import Int


class ScaleByLbfgsState(NamedTuple):
    """The last point and the ring of the last ``memory_size`` differences.

    Attributes:
      prev_params: the params ``w_{k-1}`` at the last update.
      prev_updates: the updates ``u_{k-1}`` it was given (the gradient there).
      s: per leaf, ``(memory_size, *shape)``: the differences ``w_j - w_{j-1}``;
        slot ``(j - 1) mod memory_size`` holds the pair made at update ``j``.
      y: the same for ``u_j - u_{j-1}``.
      rho: ``(memory_size,)``: ``1 / Re⟨y_j, s_j⟩`` (0 for an empty slot or a
        zero product).
    """

    prev_params: Params
    prev_updates: Updates
    s: Any
    y: Any
    rho: jax.Array


@factory(counted=True, memory_size=Int(1), scale_init_precond=Flag())
def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformation:
    """Multiply the updates by L-BFGS's inverse-Hessian estimate, as ``optax.scale_by_lbfgs``.

    At update ``k`` (from 0), with params ``w_k`` and updates ``u_k`` (the
    gradient), the pair of the last step enters a ring of ``m = memory_size``::

      s_k = w_k - w_{k-1},  y_k = u_k - u_{k-1},  ρ_k = 1 / Re⟨y_k, s_k⟩   (0 if that is 0
                                          or overflows; nothing is stored at k = 0)
      γ_k = Re⟨y_k, s_k⟩ / ‖y_k‖²  (1 if ‖y_k‖ = 0);  γ_0 = min(1, 1 / ‖u_0‖)
      out = H_k u_k   by the two-loop recursion over the ring, newest pair first,
                      from H = γ_k I (γ = 1 throughout with scale_init_precond=False)

    The output is the direction ``H u``, a descent direction to be negated:
    ``gradtx.lbfgs(convention="optax")`` chains it with ``scale(-η)`` and
    ``scale_by_zoom_linesearch``.  The pair is made from the params as they
    come, so the memory describes the steps actually taken after any line
    search.  ``γ_0`` caps the first step's length at 1 (optax's heuristic).

    Differences: the ring keeps the differences in at least float32 and the
    recursion runs in that precision (optax: the leaves' dtype), with the
    result cast back to each leaf's dtype; ``ρ`` is in the leaves' widest such
    dtype (optax: JAX's default float).  float32 and float64 trees get
    optax's numbers (a tree mixing the two does not: optax rounds the float32
    leaves' shares of the inner products to float32), but where ``Re⟨y, s⟩`` is subnormal, so that its
    reciprocal overflows: such a pair is dropped (``ρ = 0``), as a zero
    product is, where optax keeps ``ρ = ∞`` and the recursion forms ``∞ - ∞``.
    That happens only where subnormals survive (on a GPU; XLA's CPU backend
    flushes them to 0), past convergence: on a GPU, L-BFGS on a quadratic
    in float32 reached a loss of 1e-42 and then NaN params.  Complex leaves
    are taken as optax does (``Re`` of the conjugated inner products).  The state's fields are named after the math
    (optax's ``params``, ``updates``, ``diff_params_memory``,
    ``diff_updates_memory``, ``weights_memory`` are ``prev_params``,
    ``prev_updates``, ``s``, ``y``, ``rho``), and its count is the
    enclosing factory's.

    Args:
      memory_size: how many pairs the ring keeps (static).
      scale_init_precond: start the recursion from ``γ_k I``, not ``I``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_lbfgs(memory_size=3)
      >>> params = jnp.array([3.0, 4.0])
      >>> tx.update(params, tx.init(params), params)[0]  # γ_0 = 1 / ‖u‖ = 1/5
      Array([0.6, 0.8], dtype=float32)

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., Algorithm 7.4 (the
      two-loop recursion) and eq. 7.20 (γ).  Liu & Nocedal, "On the limited
      memory BFGS method for large scale optimization", Math. Programming 45, 1989.
    """
    m = memory_size

    def init(params):
        def ring(p):
            # Broadcast from the leaf, so each slot keeps the leaf's sharding on a mesh.
            zero = jnp.zeros_like(p, dtype=_dtypes.compute_dtype(jnp.result_type(p)))
            return jnp.broadcast_to(zero[None], (m, *jnp.shape(p)))

        leaves = [jnp.asarray(p) for p in jax.tree.leaves(params)]
        dtype = _dtypes.real_dtype(_dtypes.compute_dtype(*(x.dtype for x in leaves)))
        return ScaleByLbfgsState(
            prev_params=jax.tree.map(jnp.zeros_like, params),
            prev_updates=jax.tree.map(jnp.zeros_like, params),
            s=jax.tree.map(ring, params), y=jax.tree.map(ring, params), rho=jnp.zeros(m, dtype),
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_lbfgs")
        if params is None:
            raise ValueError(f"{call}: update needs params (the pairs are differences of them)")
        count = step_count(extra, call)
        dtype = state.rho.dtype
        started = count > 0

        def diff(new, old):
            wide = _dtypes.compute_dtype(jnp.result_type(new))
            return jnp.where(started, new.astype(wide) - old.astype(wide), jnp.zeros([], wide))

        s_k = jax.tree.map(diff, params, state.prev_params)
        y_k = jax.tree.map(diff, updates, state.prev_updates)
        ys, yy = _tree.real_vdot(y_k, s_k, dtype), _tree.sum_of_squares(y_k, dtype)
        inverse = 1 / jnp.where(ys == 0, 1, ys)
        rho_k = jnp.where((ys == 0) | jnp.isinf(inverse), jnp.zeros([], dtype), inverse)
        slot = (count - 1) % m  # the newest pair; the oldest is at count % m
        # jnp.asarray: a state restored from a checkpoint may hold NumPy arrays (no .at)
        s = jax.tree.map(lambda ring, x: jnp.asarray(ring).at[slot].set(x), state.s, s_k)
        y = jax.tree.map(lambda ring, x: jnp.asarray(ring).at[slot].set(x), state.y, y_k)
        rho = jnp.asarray(state.rho).at[slot].set(jnp.where(started, rho_k, jnp.zeros([], dtype)))
        if scale_init_precond:
            gamma = jnp.where(yy > 0, ys / jnp.where(yy > 0, yy, 1), jnp.ones([], dtype))
            norm = _numerics.safe_sqrt(_tree.sum_of_squares(updates, dtype))
            # 1/norm guarded inside too: a zero first gradient gave min(1, inf) = 1, but its
            # 0/0 tangent reached forward-mode derivatives as NaN
            gamma = jnp.where(started, gamma, jnp.minimum(1.0, 1 / jnp.where(norm > 0, norm, 1)))
        else:
            gamma = jnp.ones([], dtype)

        q0 = jax.tree.map(lambda u: u.astype(_dtypes.compute_dtype(u.dtype)), updates)
        memory = (s, y, rho, count % m)
        (q, alpha), _ = lax.fori_loop(0, m, _newest_first, ((q0, jnp.zeros(m, dtype)), memory))
        r = jax.tree.map(lambda v: gamma.astype(v.dtype) * v, q)
        (r, _), _ = lax.fori_loop(0, m, _oldest_first, ((r, alpha), memory))
        out = jax.tree.map(lambda v, u: v.astype(u.dtype), r, updates)
        kept = jax.tree.map(lambda u, old: u.astype(old.dtype), updates, state.prev_updates)
        return out, ScaleByLbfgsState(params, kept, s, y, rho)

    return GradientTransformation(init, update)


# The recursion's loop bodies take the memory as an operand, so that ``lax.fori_loop``
# finds its trace and its compiled loop again on an eager update (by the body's identity).


def _pair(memory: tuple, j: Any) -> tuple:
    """Slot ``j`` of the ring in age order (0 the oldest, m - 1 the newest): k, s, y."""
    s, y, rho, oldest = memory
    k = (oldest + j) % rho.shape[0]
    return k, jax.tree.map(lambda r: r[k], s), jax.tree.map(lambda r: r[k], y)


def _newest_first(i: Any, carry: tuple) -> tuple:
    (q, alpha), memory = carry
    rho = memory[2]
    k, s_j, y_j = _pair(memory, rho.shape[0] - 1 - i)
    a = rho[k] * _tree.real_vdot(s_j, q, rho.dtype)
    q = jax.tree.map(lambda v, w: v - a.astype(v.dtype) * w, q, y_j)
    return (q, alpha.at[k].set(a)), memory


def _oldest_first(i: Any, carry: tuple) -> tuple:
    (r, alpha), memory = carry
    rho = memory[2]
    k, s_j, y_j = _pair(memory, i)
    c = alpha[k] - rho[k] * _tree.real_vdot(y_j, r, rho.dtype)
    return (jax.tree.map(lambda v, w: v + c.astype(v.dtype) * w, r, s_j), alpha), memory
