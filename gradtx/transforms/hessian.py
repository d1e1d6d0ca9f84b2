"""Diagonal Hessian estimates and preconditioning by them (Sophia)."""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import INTERNAL_EXTRAS
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Anything
from gradtx._specs import DType
from gradtx._specs import Hyper
from gradtx._specs import Transform


def _is_one_key(x: Any) -> bool:
    """One typed PRNG key, or one raw key (``jax.random.PRNGKey(seed)``'s data)."""
    if not isinstance(x, jax.Array):
        return False
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x.shape == ()
    raw = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
    return x.dtype == raw.dtype and x.shape == raw.shape


class HutchinsonState(NamedTuple):
    """``key``: the PRNG key of the next probe, as raw key data."""

    key: jax.Array


@factory(random_seed=Anything())
def hutchinson_hessian_diagonal(random_seed: jax.Array | None = None) -> GradientTransformation:
    """Estimate ``diag(∇²f(θ))`` by Hutchinson's method, from ``obj_fn`` given to ``update``.

    ``update(updates, state, params, obj_fn=f)`` draws a Rademacher vector
    ``r`` (±1 entries) and returns ``r ⊙ (∇²f(θ) r)``, an unbiased estimate
    of the Hessian's diagonal, computed as a Jacobian-vector product of
    ``jax.grad(f)`` (no Hessian is formed).  Its input is ignored.  ``f``
    takes the params alone and returns the scalar loss, e.g.
    ``obj_fn=lambda p: loss(p, batch)``.

    The draws equal ``optax.contrib.hutchinson_estimator_diag_hessian``'s for
    the same key: each call splits the key, then one key per leaf in tree
    order, float32 signs cast to each leaf's dtype.  It needs the params'
    own tree (``f`` is called on it), so it refuses to run inside
    ``gradtx.flatten``.

    Args:
      random_seed: a JAX PRNG key (``jax.random.PRNGKey(0)`` if ``None``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * w ** 2)  # diag = 2, 4, 6
      >>> tx = gradtx.hutchinson_hessian_diagonal()
      >>> w = jnp.ones(3)
      >>> tx.update(w, tx.init(w), w, obj_fn=f)[0]  # exact for a diagonal Hessian
      Array([2., 4., 6.], dtype=float32)

    References:
      Hutchinson, "A stochastic estimator of the trace of the influence matrix
      for Laplacian smoothing splines", 1989; Liu et al., "Sophia", 2023.
    """
    call = current_call("gradtx.hutchinson_hessian_diagonal")
    if random_seed is not None and not _is_one_key(random_seed):
        raise TypeError(
            f"{call}(random_seed={random_seed!r}): random_seed must be a JAX PRNG key "
            "(jax.random.PRNGKey(seed)) or None"
        )

    # A typed key is stored as its raw data (as add_noise and dpsgd store theirs), which
    # every checkpoint format can write (flax's to_bytes cannot write a key array).
    typed = random_seed is not None and jnp.issubdtype(random_seed.dtype, jax.dtypes.prng_key)
    impl = jax.random.key_impl(random_seed) if random_seed is not None and typed else None

    def init(params):
        key = jax.random.PRNGKey(0) if random_seed is None else random_seed
        return HutchinsonState(jnp.array(jax.random.key_data(key) if typed else key))

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.hutchinson_hessian_diagonal")
        _tree.check_per_leaf(call, "gradtx.hutchinson_hessian_diagonal")
        obj_fn = _update_checks.passed_function(
            call, params, extra, "obj_fn",
            "the loss as a function of them: update(grads, state, params, "
            "obj_fn=lambda p: loss(p, batch))",
        )  # fmt: skip
        _update_checks.loss_function(f"{call}.update", "obj_fn", obj_fn, params)
        key = jax.random.wrap_key_data(state.key, impl=impl) if typed else state.key
        key, probe = jax.random.split(key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(probe, len(leaves))
        signs = [
            jax.random.rademacher(
                k, x.shape, jnp.float32, out_sharding=jax.typeof(x).sharding
            ).astype(x.dtype)
            for k, x in zip(keys, leaves)
        ]
        signs = treedef.unflatten(signs)
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
        key = jax.random.key_data(key) if typed else key
        return jax.tree.map(jnp.multiply, hvp, signs), HutchinsonState(key)

    return GradientTransformation(init, update)


HUTCHINSON = hutchinson_hessian_diagonal()
"""The default estimator of ``scale_by_hessian_diagonal`` and ``sophia`` (key 0)."""


@functools.cache
def _bare_hutchinson() -> GradientTransformation:
    """The default estimator as a body member (no memory of trees, so one serves every
    optimizer).  Called inside a factory body, where a factory call returns its bare
    transform."""
    return hutchinson_hessian_diagonal()


def _refresh(estimator: Any, fixed: tuple) -> Any:
    """The refresh branch: estimate at the params, fold into the EMA.  Reads every
    array from its operands; ``fixed`` holds the keywords that are not arrays (``obj_fn``)."""

    def refresh(estimator_state, hessian, grads, params, arrays, b2):
        estimate, estimator_state = estimator.update(
            grads, estimator_state, params, **arrays, **dict(fixed)
        )
        return estimator_state, _numerics.ema(b2, hessian, estimate)

    return refresh


def _keep(estimator_state: Any, hessian: Any, *_: Any) -> tuple[Any, Any]:
    return estimator_state, hessian


class ScaleByHessianDiagonalState(NamedTuple):
    """``hessian``: ``h``, an EMA of the estimates of ``diag(∇²f)``;
    ``estimator_state``: the estimator's own state."""

    hessian: Updates
    estimator_state: OptState


@factory(counted=True, b2=DECAY_RATE, gamma=NON_NEGATIVE, eps=NON_NEGATIVE,
         update_interval=Hyper(low=1.0, integer=True), hessian_diagonal_fn=Transform(),
         dtype=DType())  # fmt: skip
def scale_by_hessian_diagonal(
    b2: float = 0.99,
    gamma: float = 0.01,
    eps: float = 1e-8,
    update_interval: int = 10,
    hessian_diagonal_fn: optax.GradientTransformation = HUTCHINSON,
    *,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide by ``max(γ h, eps)``, ``h`` an EMA of diagonal Hessian estimates (Sophia).

    With ``k`` the 0-based step::

      out_k = u_k / max(gamma · h_k, eps)
      h_{k+1} = b2 h_k + (1 - b2) ĥ_k   if k % update_interval == 0, else h_k

    where ``ĥ_k`` is ``hessian_diagonal_fn``'s estimate at the current params
    (``h_0 = 0``): the step uses the estimate from before this one, and the
    estimator runs (and advances its state) only on refresh steps, as in
    ``optax.contrib.scale_by_sophia``.  Follow it with ``clip`` for Sophia's
    element-wise clipping.

    The estimator is called as ``hessian_diagonal_fn.update(g, its_state,
    params, **kw)`` with ``g`` the gradient and ``kw`` the keywords given to
    this ``update`` (e.g. ``obj_fn`` for the default Hutchinson estimator).
    ``g`` is the chain's ``grads`` keyword when present, else the input.

    Args:
      b2: the EMA rate of ``h``, in [0, 1); the effective rate per step is
        ``1 - (1 - b2) / update_interval``.
      gamma: γ, scales ``h``.
      eps: floor of the denominator.
      update_interval: steps between estimates (an integer ≥ 1).
      hessian_diagonal_fn: a transform returning a diagonal Hessian estimate
        (default: ``hutchinson_hessian_diagonal()``, key 0).
      dtype: storage dtype of ``h`` (``None``: the params' dtype, float32 for 16-bit ones).

    References:
      Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order
      Optimizer for Language Model Pre-training", ICLR 2024 (arXiv:2305.14342).
    """
    estimator = _bare_hutchinson() if hessian_diagonal_fn is HUTCHINSON else hessian_diagonal_fn

    def init(params):
        return ScaleByHessianDiagonalState(_tree.zeros_like(params, dtype), estimator.init(params))

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_hessian_diagonal")
        if params is None:
            raise ValueError(f"{call}: update needs params (the Hessian is estimated there)")
        count = step_count(extra, call)

        def scale(u, h):
            wide = _dtypes.compute_dtype(u.dtype, h.dtype)
            h = jnp.real(h.astype(wide))
            floor = jnp.maximum(_tree.scalar_like(gamma, h) * h, _tree.scalar_like(eps, h))
            num, floor = u.astype(wide), floor.astype(wide)
            # u/0 (eps = 0, no curvature yet) is ±inf as IEEE gives it, and Sophia's clip
            # makes it ±threshold; its derivative is that constant's, 0, where the inf
            # tangent times the clip's 0 was NaN
            scaled = num / jnp.where(floor > 0, floor, 1)
            flat = jax.lax.stop_gradient(_numerics.div0(num, floor))
            return jnp.where(floor > 0, scaled, flat).astype(u.dtype)

        out = jax.tree.map(scale, updates, state.hessian)
        given = {k: v for k, v in extra.items() if k not in INTERNAL_EXTRAS}
        arrays, fixed = _control.split_data(given)
        operands = (
            state.estimator_state, state.hessian, gradient(updates, extra), params, arrays,
            jnp.asarray(b2),
        )  # fmt: skip
        period = jnp.asarray(update_interval).astype(count.dtype)
        refresh = _refresh(estimator, fixed)
        estimator_state, hessian = _control.cond(count % period == 0, refresh, _keep, *operands)
        return out, ScaleByHessianDiagonalState(hessian, estimator_state)

    return GradientTransformation(init, update)
