"""DP-SGD and its aggregation against optax, step by step in float64: per-example
gradients (some clipped, some not), the same noise for the same seed."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_trajectories_close

EXAMPLES = 4


def _h(seed):
    rng = np.random.default_rng(950 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.1)),
        clip=float(rng.uniform(1.0, 6.0)),  # per-example norms are ~2-8: some are clipped
        noise=float(rng.uniform(0.1, 2.0)),
        momentum=float(rng.uniform(0.5, 0.95)),
    )


def _run(tx, seed, steps=25):
    """Params after each step; the per-example gradients change with the step."""
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s)) for k, s in MIXED_SHAPES.items()}
    scales = rng.uniform(0.2, 2.0, size=(steps, EXAMPLES))
    per_example = [
        {k: jnp.asarray(sc.reshape(-1, *[1] * len(s)) * rng.normal(size=(EXAMPLES, *s)))
         for k, s in MIXED_SHAPES.items()}
        for sc in scales
    ]  # fmt: skip
    state, update, out = tx.init(params), jax.jit(tx.update), []
    for g in per_example:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
        out.append({k: np.asarray(v) for k, v in params.items()})
    return out


def _optax_dpsgd(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optax's dpsgd passes seed=
        return optax.contrib.dpsgd(*args, **kwargs)


@pytest.mark.parametrize(
    "momentum, nesterov", [(None, False), ("momentum", False), ("momentum", True)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_dpsgd_matches_optax(x64, momentum, nesterov, seed):
    h = _h(seed)
    mu = h["momentum"] if momentum else None
    args = h["lr"], h["clip"], h["noise"], 10 + seed
    ours = gradtx.dpsgd(*args, momentum=mu, nesterov=nesterov)
    theirs = _optax_dpsgd(*args, momentum=mu, nesterov=nesterov)
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        ref = _run(theirs, seed)
    assert_trajectories_close(_run(ours, seed), ref)


def test_aggregate_matches_optax_with_a_key_and_its_noise_is_real(x64):
    """The transform alone, given a typed key; another key draws other noise, and
    without noise the result is the clipped mean (so the comparison is not vacuous)."""
    h = _h(2)
    key = jax.random.key(5)
    ours = gradtx.chain(
        gradtx.differentially_private_aggregate(h["clip"], h["noise"], key), gradtx.sgd(0.1)
    )
    theirs = optax.chain(
        optax.contrib.differentially_private_aggregate(h["clip"], h["noise"], key),
        optax.sgd(0.1),
    )
    with jax.numpy_dtype_promotion("standard"):
        ref = _run(theirs, 2)
    assert_trajectories_close(_run(ours, 2), ref)
    other = _run(gradtx.dpsgd(0.1, h["clip"], h["noise"], seed=6), 2)
    assert not np.allclose(other[-1]["w"], ref[-1]["w"])

    tx = gradtx.differentially_private_aggregate(2.0, 0.0)
    g = jnp.array([[3.0, 4.0], [0.6, 0.8], [0.0, 0.0]])  # norms 5 (clipped), 1, 0
    out, _ = tx.update(g, tx.init(jnp.zeros(2)), jnp.zeros(2))
    np.testing.assert_allclose(out, (g[0] * 2.0 / 5.0 + g[1]) / 3, rtol=1e-15)


def test_nesterov_without_momentum_is_plain_sgd_as_in_optax(x64):
    """optax runs nesterov=True with momentum None (ignored) or 0 (a trace of decay 0)."""
    for mu in (None, 0.0):
        ours = gradtx.dpsgd(0.05, 2.0, 0.5, 3, momentum=mu, nesterov=True)
        theirs = _optax_dpsgd(0.05, 2.0, 0.5, 3, momentum=mu, nesterov=True)
        with jax.numpy_dtype_promotion("standard"):
            ref = _run(theirs, 0)
        assert_trajectories_close(_run(ours, 0), ref)


def test_per_example_shapes_are_checked():
    opt = gradtx.dpsgd(0.1, 1.0, 1.0, seed=0)
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"gradtx.dpsgd.update: expects per-example gradients"):
        opt.update({"w": jnp.zeros(3), "b": jnp.zeros(())}, state, params)
    with pytest.raises(ValueError, match="per-example gradients"):  # two example counts
        opt.update({"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}, state, params)
    with pytest.raises(ValueError, match=r"leaf \['w'\] is float32\[2, 4\], which is not a"):
        opt.update({"w": jnp.zeros((2, 4)), "b": jnp.zeros(2)}, state, params)
    one = {"w": jnp.zeros(3)}  # no example axis: the message printed the same shape twice
    with pytest.raises(ValueError, match=r"float32\[3\], which is not a leading example axis"):
        opt.update(one, opt.init(one), one)
    with pytest.raises(ValueError, match=r"gradtx.dpsgd\(l2_norm_clip=-1.0\)"):
        gradtx.dpsgd(0.1, -1.0, 1.0, seed=0)
    with pytest.raises(ValueError, match="cannot run inside gradtx.flatten"):
        gradtx.flatten(gradtx.dpsgd(0.1, 1.0, 1.0, seed=0)).init({"w": jnp.zeros(3)})


def test_dpsgd_needs_its_seed():
    # seed=None was taken as seed 0 (the noise of seed=0); a bad one named `key`.
    with pytest.raises(TypeError, match=r"^gradtx.dpsgd\(seed=None\): seed must be an int seed"):
        gradtx.dpsgd(0.1, 1.0, 0.1, seed=None)
    with pytest.raises(TypeError, match=r"^gradtx.dpsgd\(seed=2.5\): seed must be an int seed"):
        gradtx.dpsgd(0.1, 1.0, 0.1, seed=2.5)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.ones((2, 3))}
    by_int, by_key = (
        gradtx.dpsgd(0.1, 1.0, 1.0, seed=3),
        gradtx.dpsgd(0.1, 1.0, 1.0, seed=jax.random.key(3)),
    )
    np.testing.assert_array_equal(
        by_int.update(grads, by_int.init(params), params)[0]["w"],
        by_key.update(grads, by_key.init(params), params)[0]["w"],
    )


def test_complex_per_example_gradients_are_clipped_by_their_modulus(x64):
    """The norms taken in the real dtype dropped the imaginary parts first: [3j, 4j] with
    a clip of 1 came back unclipped; optax's clip gives [0.6j, 0.8j]."""
    g = jnp.array([[3j, 4j], [0.3 + 0.4j, 0.0], [1.0 - 2.0j, 2.0j]])
    tx = gradtx.differentially_private_aggregate(1.0, 0.0)
    theirs = optax.contrib.differentially_private_aggregate(1.0, 0.0, jax.random.key(0))
    out, _ = tx.update(g, tx.init(jnp.zeros(2, g.dtype)), jnp.zeros(2, g.dtype))
    with jax.numpy_dtype_promotion("standard"):
        ref, _ = theirs.update(g, theirs.init(jnp.zeros(2, g.dtype)))
    np.testing.assert_allclose(out, ref, rtol=1e-14)
    np.testing.assert_allclose(out, (jnp.array([0.6j, 0.8j]) + g[1] + g[2] / 3) / 3, rtol=1e-14)
