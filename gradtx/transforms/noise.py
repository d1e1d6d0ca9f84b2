"""Annealed Gaussian noise added to the gradient (Neelakantan et al.)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientMap
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Anything
from gradtx._specs import Hyper
from gradtx._specs import Option


class AddNoiseState(NamedTuple):
    """``rng_key``: the PRNG key of the next step, as raw key data (``jax.random.key_data``)."""

    rng_key: jax.Array


def _typed_key(call: str, key: Any, seed: Any) -> jax.Array:
    """The PRNG key an int seed or a typed key stands for (``jax.random.key(seed)``)."""
    if key is not None and seed is not None:
        raise ValueError(f"{call}(key=..., seed=...): give key or seed (deprecated), not both")
    if key is None:
        key = 0 if seed is None else seed
        name = "key" if seed is None else "seed"
    else:
        name = "key"
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{call}({name}=...): one PRNG key, got an array of shape {key.shape}")
        return key
    is_int = isinstance(key, (int, np.integer)) or (
        isinstance(key, (jax.Array, np.ndarray))
        and key.shape == ()
        and jnp.issubdtype(key.dtype, jnp.integer)
    )
    if not is_int or isinstance(key, (bool, np.bool_)):
        raise TypeError(
            f"{call}({name}={key!r}): {name} must be an int seed or a PRNG key "
            "(jax.random.key), like optax's"
        )
    try:
        return jax.random.key(key)
    except OverflowError:
        raise ValueError(f"{call}({name}={key!r}): {name} must be in [-2**63, 2**63)") from None


class Seed(Option):
    """A required ``seed``: an int seed or a PRNG key, checked as the noise checks it
    (``None`` would mean seed 0 there, which a required argument must not)."""

    def check(self, call, name, value):
        if value is None:
            raise TypeError(
                f"{call}({name}=None): {name} must be an int seed or a PRNG key "
                "(jax.random.key), like optax's"
            )
        _typed_key(call, None, value)
        return value


@factory(kind=GradientMap, counted=True, eta=NON_NEGATIVE, gamma=Hyper(), key=Anything(),
         seed=Anything())  # fmt: skip
def add_noise(
    eta: float = 0.01, gamma: float = 0.55, key: Any = None, *, seed: Any = None
) -> GradientMap:
    """Add Gaussian noise of variance ``eta / t^gamma`` to the gradient.

    With ``t`` the 1-based step::

      out = updates + sqrt(eta / t^gamma) · ξ_t,     ξ_t ~ N(0, I)

    The noise anneals so that it helps early exploration and fades later
    (Neelakantan et al. use ``gamma = 0.55``).  The draw is ``optax.add_noise``'s,
    number for number: the state keeps the PRNG key, each step splits it into
    the next key and a sample key, and the sample key is split once per leaf
    (in ``jax.tree.leaves`` order) to draw that leaf's noise in its own dtype
    (the params', when given).  The same ``key`` or ``seed`` therefore gives
    optax's noise; a 16-bit leaf adds it in float32 and rounds once, where optax
    adds in 16 bits (the sums may differ in the last place).  The draw
    depends on the leaves' shapes, so this refuses to run inside ``gradtx.flatten``.

    It is a gradient map: statistics after it in a chain see the noisy gradient.

    Args:
      eta: the initial variance η ≥ 0.
      gamma: the annealing exponent.
      key: an int seed or a PRNG key (``jax.random.key``); ``None``: seed 0.
      seed: optax's deprecated spelling of an int ``key``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> tx = gradtx.add_noise(eta=0.0, key=jax.random.key(3))  # no variance: no noise
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([1., 2.], dtype=float32)

    References:
      Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
      Networks", 2015 (arXiv:1511.06807).
    """
    call = current_call("gradtx.add_noise")
    typed = _typed_key(call, key, seed)
    impl = jax.random.key_impl(typed)

    def init(params):
        # key_data is the caller's key's own buffer: copied, so donating the state
        # does not delete the user's key.
        return AddNoiseState(jnp.copy(jax.random.key_data(typed)))

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(call, "gradtx.add_noise")
        t = _numerics.safe_increment(step_count(extra, call))
        e = jnp.asarray(eta)
        std = jnp.sqrt(e / t.astype(e.dtype) ** jnp.asarray(gamma).astype(e.dtype))
        next_key, sample = jax.random.split(jax.random.wrap_key_data(state.rng_key, impl=impl))
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample, len(leaves))
        # the leaf's own dtype is the params' (16-bit updates arrive widened with them)
        own = leaves if params is None else treedef.flatten_up_to(params)
        own = [jnp.result_type(x) for x in own]

        def noisy(u, k, dtype):
            xi = jax.random.normal(k, u.shape, dtype, out_sharding=jax.typeof(u).sharding)
            wide = _dtypes.compute_dtype(u.dtype)
            return (u.astype(wide) + std.astype(wide) * xi.astype(wide)).astype(u.dtype)

        out = treedef.unflatten([noisy(u, keys[i], own[i]) for i, u in enumerate(leaves)])
        return out, AddNoiseState(jax.random.key_data(next_key))

    return GradientMap(init, update)
