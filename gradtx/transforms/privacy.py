"""Differentially private aggregation of per-example gradients (DP-SGD's first stage)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientMap
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Anything
from gradtx.transforms.noise import _typed_key


class DifferentiallyPrivateAggregateState(NamedTuple):
    """``rng_key``: the PRNG key of the next step, as raw key data (``jax.random.key_data``)."""

    rng_key: jax.Array


@factory(kind=GradientMap, example_axis=True, l2_norm_clip=NON_NEGATIVE, noise_multiplier=NON_NEGATIVE,
         key=Anything(), seed=Anything())  # fmt: skip
def differentially_private_aggregate(
    l2_norm_clip: float,
    noise_multiplier: float,
    key: Any = None,
    *,
    seed: Any = None,
) -> GradientMap:
    """Clip each example's gradient, sum, add Gaussian noise, average: DP-SGD's gradient.

    Its input has a leading example axis on every leaf (per-example gradients,
    ``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)``); its output
    has the params' shapes.  With ``B`` examples and ``C = l2_norm_clip``::

      g̃_i = g_i · min(1, C / ‖g_i‖)        (‖·‖ over all leaves of example i)
      out = (Σ_i g̃_i + C · noise_multiplier · ξ) / B,      ξ ~ N(0, I)

    The noise is ``optax.contrib.differentially_private_aggregate``'s, number for
    number, for float32 and float64 trees: each step splits the state's key into
    the next key and one key per leaf (in ``jax.tree.leaves`` order), drawing in
    the leaf's dtype, so the same ``key`` or ``seed`` gives optax's noise.  A
    bfloat16 or float16 leaf's sum and noise are computed in float32 (optax draws
    in the 16-bit dtype), and a float32 leaf in a tree with float64 ones keeps
    float32 (optax promotes it): other draws there.  It must be the first stage of a
    chain (later stages see params-shaped values), and wrappers that aggregate
    gradients themselves (``accumulate_gradients``, ``optax.MultiSteps``) do not
    compose with it.  It is a gradient map: statistics after it see the private
    gradient.  The clipping norm and the noise depend on the leaves' layout, so it
    refuses to run inside ``gradtx.flatten``.

    Args:
      l2_norm_clip: C ≥ 0, the largest norm an example's gradient keeps.
      noise_multiplier: the noise's standard deviation in units of C.
      key: an int seed or a PRNG key (``jax.random.key``); ``None``: seed 0.
      seed: optax's deprecated spelling of an int ``key``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.differentially_private_aggregate(1.0, 0.0)  # no noise
      >>> per_example = jnp.array([[3.0, 4.0], [0.0, 0.0]])  # norms 5 and 0
      >>> tx.update(per_example, tx.init(jnp.zeros(2)))[0]  # ([0.6, 0.8] + [0, 0]) / 2
      Array([0.3, 0.4], dtype=float32)

    References:
      Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
    """
    call = current_call("gradtx.differentially_private_aggregate")
    # Flat buffers have neither the example axis nor the leaves' norms: refused when
    # gradtx.flatten's init builds this, where the error can name it.
    _tree.check_per_leaf(call, "gradtx.differentially_private_aggregate")
    typed = _typed_key(call, key, seed)
    impl = jax.random.key_impl(typed)

    def init(params):
        # key_data is the caller's key's own buffer: copied, so donating the state
        # does not delete the user's key.
        return DifferentiallyPrivateAggregateState(jnp.copy(jax.random.key_data(typed)))

    def update(updates, state, params=None, **extra):
        # Its own factory checks the example axis; built inside another's body (which
        # may not declare one), it checks here with the same rule.
        updates, params = _update_checks.check_updates(
            call, updates, params, example_axis=True, widened=True
        )
        leaves, treedef = jax.tree.flatten(updates)
        size = leaves[0].shape[0] if leaves else 0
        # The norms in the leaves' widest real dtype (at least float32), each leaf's sum
        # and noise in its own (at least float32): optax's dtypes for float32 and float64.
        wide = _dtypes.real_dtype(_dtypes.compute_dtype(*(g.dtype for g in leaves)))
        squares = [
            jnp.sum(
                _tree.abs_sq(g.astype(_dtypes.compute_dtype(g.dtype, wide))),
                tuple(range(1, g.ndim)),
            )
            for g in leaves
        ]
        norms = _numerics.safe_sqrt(sum(squares, jnp.zeros([size], wide)))
        clip = jnp.asarray(l2_norm_clip).astype(wide)
        # optax's nan_to_num: a NaN factor (a NaN norm, or C = 0 on a zero gradient)
        # counts as 1.
        factor = jnp.nan_to_num(jnp.minimum(clip / norms, 1.0), nan=1.0)
        std = clip * jnp.asarray(noise_multiplier).astype(wide)
        next_key, *keys = jax.random.split(
            jax.random.wrap_key_data(state.rng_key, impl=impl), len(leaves) + 1
        )

        def private(g, k):
            dtype = _dtypes.compute_dtype(g.dtype)
            total = jnp.tensordot(
                factor.astype(dtype), g.astype(dtype), axes=1, out_sharding=_summed(factor, g)
            )
            xi = jax.random.normal(k, total.shape, dtype)
            return ((total + std.astype(dtype) * xi) / size).astype(g.dtype)

        out = treedef.unflatten([private(g, k) for g, k in zip(leaves, keys)])
        return out, DifferentiallyPrivateAggregateState(jax.random.key_data(next_key))

    return GradientMap(init, update)


def _summed(factor: jax.Array, g: jax.Array) -> Any:
    """The sharding of ``Σ_i factor_i · g_i`` on an explicit mesh (else None): ``g``'s
    without the example axis.  With the examples split over devices (data parallelism)
    the contraction is over a sharded axis, which JAX refuses to place by itself."""
    own = _tree.explicit_sharding(g)
    sharding = own or _tree.explicit_sharding(factor)
    if sharding is None:
        return None
    spec = () if own is None else tuple(own.spec)[1:]
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
