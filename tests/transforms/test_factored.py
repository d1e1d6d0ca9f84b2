"""scale_by_factored_rms, clip_by_block_rms and scale_by_param_rms (Adafactor's primitives)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.transforms.factored import factored_axes


def test_state_is_row_and_column_statistics():
    params = {
        "m": jnp.zeros((2, 3)),
        "k": jnp.zeros((4, 2, 5)),
        "v": jnp.zeros(3),
        "s": jnp.zeros(()),
    }
    state = gradtx.scale_by_factored_rms().init(params)
    inner = state.inner_state
    assert isinstance(inner, gradtx.ScaleByFactoredRmsState)
    assert jax.tree.map(jnp.shape, inner.nu_row) == {
        "m": (2, 1),
        "k": (4, 2, 1),
        "v": (1,),  # placeholders: each field is a params-like tree (tree_map_params)
        "s": (1,),
    }
    assert jax.tree.map(jnp.shape, inner.nu_col) == {
        "m": (1, 3),
        "k": (4, 1, 5),
        "v": (1,),
        "s": (1,),
    }
    assert jax.tree.map(jnp.shape, inner.nu) == {"m": (1,), "k": (1,), "v": (3,), "s": ()}
    # optax's axes: the two largest ("k": 4 and 5), the largest being the column axis
    inner = gradtx.scale_by_factored_rms(axes="largest").init(params).inner_state
    assert jax.tree.map(jnp.shape, inner.nu_row)["k"] == (4, 2, 1)
    assert jax.tree.map(jnp.shape, inner.nu_col)["k"] == (1, 2, 5)
    # factored=False: no row or column buffers at all
    inner = gradtx.scale_by_factored_rms(factored=False).init(params).inner_state
    assert inner.nu_row is None and inner.nu_col is None


def test_which_leaves_are_factored():
    assert factored_axes((3, 4), "last", True, 0) == (0, 1)
    assert factored_axes((5, 3, 4), "last", True, 0) == (1, 2)
    assert factored_axes((5, 3, 4), "largest", True, 0) == (2, 0)
    assert factored_axes((5, 3, 4), "largest", True, 5) is None  # second largest is 4
    assert factored_axes((5, 3, 4), "last", True, 4) is None
    assert factored_axes((6,), "last", True, 0) is None
    assert factored_axes((3, 4), "last", False, 0) is None


def test_factored_estimate_by_hand(x64):
    rng = np.random.default_rng(0)
    g1, g2 = rng.normal(size=(2, 3, 4))
    tx = gradtx.scale_by_factored_rms(0.8, 1e-3)  # owns its step count
    state = tx.init(jnp.zeros((3, 4)))
    _, state = tx.update(jnp.asarray(g1), state)
    u, state = tx.update(jnp.asarray(g2), state)
    beta = 1 - 2.0**-0.8
    row = beta * np.mean(g1**2, 1, keepdims=True) + (1 - beta) * np.mean(g2**2, 1, keepdims=True)
    col = beta * np.mean(g1**2, 0, keepdims=True) + (1 - beta) * np.mean(g2**2, 0, keepdims=True)
    v_hat = row * col / max(row.mean(), 1e-3)
    np.testing.assert_allclose(u, g2 / np.sqrt(np.maximum(v_hat, 1e-6)), rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.nu_row, row, rtol=1e-13)
    # optax's placement: eps² added to every g², no floors
    tx = gradtx.scale_by_factored_rms(0.8, 1e-3, eps_mode="add")
    u, _ = tx.update(jnp.asarray(g1), tx.init(jnp.zeros((3, 4))))
    sq = g1**2 + 1e-6
    row, col = sq.mean(1, keepdims=True), sq.mean(0, keepdims=True)
    np.testing.assert_allclose(u, g1 / np.sqrt(row * col / row.mean()), rtol=1e-13)


def test_float32_statistics_late_in_a_long_run(x64):
    """1 - β_t = t^(-0.8) is rounded once into a float32 statistic's dtype, not formed
    as 1 - float32(β_t): at t = 10^8 that was 5% off (torch's lerp weight is
    t^(-0.8) too)."""
    tx = gradtx.scale_by_factored_rms(0.8, eps=0.0)
    params = {"v": jnp.zeros(3, jnp.float32), "m": jnp.zeros((2, 3), jnp.float32)}
    state = tx.init(params)
    t = 10**8
    state = state._replace(count=jnp.asarray(t - 1, jnp.int32))
    g = {"v": jnp.full(3, 2.0, jnp.float32), "m": jnp.full((2, 3), 2.0, jnp.float32)}
    _, state = tx.update(g, state)
    want = np.float32(t**-0.8) * np.float32(4.0)
    inner = state.inner_state
    np.testing.assert_allclose(inner.nu["v"], np.full(3, want), rtol=1e-6)
    np.testing.assert_allclose(inner.nu_row["m"], np.full((2, 1), want), rtol=1e-6)
    np.testing.assert_allclose(inner.nu_col["m"], np.full((1, 3), want), rtol=1e-6)


def test_float32_statistics_stay_unbiased_late_in_a_run(x64):
    """At t = 10^8 the EMA weight w = t^(-0.8) ~ 4e-7 is below float32's rounding of
    β_t = 1 - w: written as β_t v + w g² with the two rounded apart, the weights
    summed to 1 + δ and the statistic drifted (4e-4 low after these 20,000 steps,
    3% at rest).  As v + w (g² - v) (torch's lerp) its float32 error against a
    float64 run is that of the float32 lerp itself."""
    t0, n, d = 10**8, 20_000, 64
    g = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    tx = gradtx.scale_by_factored_rms(0.8, eps=0.0)
    state = tx.init(jnp.zeros(d, jnp.float32))
    state = state._replace(
        count=jnp.asarray(t0, jnp.int32),
        inner_state=state.inner_state._replace(nu=jnp.ones(d, jnp.float32)),
    )
    run = jax.jit(lambda s, gs: jax.lax.scan(lambda s, g: (tx.update(g, s)[1], None), s, gs)[0])
    ours = np.asarray(run(state, jnp.asarray(g)).inner_state.nu, np.float64)
    w = np.arange(t0 + 1, t0 + n + 1, dtype=np.float64) ** -0.8
    exact, lerp32 = np.ones(d), np.ones(d, np.float32)
    for wi, gi in zip(w, g):
        exact += wi * (gi.astype(np.float64) ** 2 - exact)
        lerp32 = lerp32 + np.float32(wi) * (gi * gi - lerp32)
    floor = abs(np.mean(lerp32 / exact - 1))  # float32's own error here, ~6e-5
    assert abs(np.mean(ours / exact - 1)) <= 1.2 * floor + 1e-6


@pytest.mark.parametrize("eps_mode", ["floor", "add"])
def test_zero_gradient_takes_no_step_without_eps(eps_mode):
    tx = gradtx.scale_by_factored_rms(eps=0.0, eps_mode=eps_mode)
    params = {"m": jnp.zeros((2, 3)), "v": jnp.zeros(2)}
    u, _ = tx.update(params, tx.init(params))
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
    # a first step with a zero row and column in a factored leaf: their coordinates
    # stay at 0, the others divide by the rank-1 estimate
    g = jnp.asarray([[0.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    u, _ = tx.update({"m": g, "v": jnp.zeros(2)}, tx.init(params))
    sq = np.asarray(g) ** 2
    row, col = sq.mean(1, keepdims=True), sq.mean(0, keepdims=True)
    v_hat = row * col / row.mean()
    want = np.divide(np.asarray(g), np.sqrt(v_hat), out=np.zeros((2, 3)), where=v_hat > 0)
    np.testing.assert_allclose(u["m"], want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(3,), (3, 4)], ids=["1-D", "2-D"])
def test_an_overflowing_square_gives_a_zero_step_as_optax(shape):
    """g = 1e20 squares to inf in float32; a full statistic is then inf and the step 0,
    as optax's.  torch's lerp form, at a weight of 1/2 or more, formed inf - inf = NaN.
    (A factored one gives inf/inf = NaN in both libraries.)"""
    grads = jnp.full(shape, 1e20, jnp.float32)
    params = jnp.ones(shape)
    ours = gradtx.scale_by_factored_rms(factored=False)
    theirs = optax.scale_by_factored_rms(factored=False)
    got = ours.update(grads, ours.init(params), params)[0]
    want = theirs.update(grads, theirs.init(params), params)[0]
    chex.assert_trees_all_equal(got, want)
    assert not bool(jnp.any(jnp.isnan(got)))


def test_reads_the_chains_gradient():
    # After momentum, the second moment is still the gradient's.
    g = jnp.array([[2.0, -2.0], [2.0, 2.0]])
    tx = gradtx.chain(gradtx.scale(0.5), gradtx.add_momentum(0.9), gradtx.scale_by_factored_rms())
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, g * 0.5 / 1.0, rtol=1e-6)  # V̂ = (0.5 g)² = 1


def test_clip_by_block_rms_and_scale_by_param_rms():
    u = {"a": jnp.array([[3.0, 4.0]]), "b": jnp.array([0.1, -0.1])}
    clip = gradtx.clip_by_block_rms(2.0)
    out, _ = clip.update(u, clip.init(u))
    rms = np.sqrt(12.5)
    np.testing.assert_allclose(out["a"], u["a"] / (rms / 2.0), rtol=1e-6)
    np.testing.assert_allclose(out["b"], u["b"])  # RMS 0.1 <= 2: unchanged
    p = {"a": jnp.array([[0.0, 0.0]]), "b": jnp.array([3.0, 4.0])}
    tx = gradtx.scale_by_param_rms(0.01)
    out, _ = tx.update(u, tx.init(p), p)
    np.testing.assert_allclose(out["a"], u["a"] * 0.01)  # params at 0: the floor
    np.testing.assert_allclose(out["b"], u["b"] * rms, rtol=1e-6)
    with pytest.raises(ValueError, match=r"gradtx.scale_by_param_rms: update needs params"):
        tx.update(u, tx.init(p))


@pytest.mark.parametrize(
    "make, who",
    [
        (lambda: gradtx.scale_by_factored_rms(), "scale_by_factored_rms"),
        (lambda: gradtx.clip_by_block_rms(), "clip_by_block_rms"),
        (lambda: gradtx.scale_by_param_rms(), "scale_by_param_rms"),
    ],
)
def test_per_leaf_primitives_refuse_to_run_flat(make, who):
    params = {"m": jnp.ones((2, 3)), "v": jnp.ones(2)}
    tx = gradtx.flatten(gradtx.chain(make()))
    with pytest.raises(ValueError, match=f"{who}.* works per leaf"):
        tx.update(params, tx.init(params), params)
    # unfactored, the second moment is elementwise and runs flat
    tx = gradtx.flatten(gradtx.chain(gradtx.scale_by_factored_rms(factored=False)))
    tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("threshold", [0.05, 0.5, 3.0])
def test_clip_by_block_rms_takes_optaxs_range(x64, threshold):
    # optax's clip_by_block_rms takes any positive threshold; gradtx's refused < 1
    # (torch Adafactor's range for d, which gradtx.adafactor keeps).
    u = {"a": jnp.array([[3.0, 4.0]]), "b": jnp.array([0.1, -0.1]), "c": jnp.array(0.2)}
    ours = gradtx.clip_by_block_rms(threshold)
    theirs = optax.clip_by_block_rms(threshold)
    got = ours.update(u, ours.init(u))[0]
    want = theirs.update(u, theirs.init(u))[0]
    for k in u:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-14)
    with pytest.raises(ValueError, match=r"clip_by_block_rms\(threshold=0.0\): threshold must be"):
        gradtx.clip_by_block_rms(0.0)


def test_a_positive_decay_offset_on_a_fresh_count_takes_the_first_squares(x64):
    # t - decay_offset <= 0 gave 0^(-rate) and NaN params from the first step on (as
    # optax does); the shifted step is held at 1, so beta_t = 0 until the count passes it.
    grads = [jnp.array([[1.0, -2.0], [3.0, 0.5]]), jnp.array([[0.5, 1.0], [-1.0, 2.0]])]
    params = jnp.zeros((2, 2))
    shifted = gradtx.scale_by_factored_rms(decay_offset=2, min_dim_size_to_factor=1)
    fresh = gradtx.scale_by_factored_rms(min_dim_size_to_factor=1)
    s1 = shifted.init(params)
    for g in grads:  # steps 1 and 2: t - 2 <= 0, held at 1, as a fresh count's first step
        u1, s1 = shifted.update(g, s1, params)
        u2, _ = fresh.update(g, fresh.init(params), params)
        np.testing.assert_allclose(u1, u2, rtol=1e-14)
        assert np.isfinite(np.asarray(u1)).all()


@pytest.mark.parametrize("count", [2**25, 2**25 + 1, 2**24 + 1])
def test_decay_offset_past_2_24_matches_optax_in_float32(count):
    """count + 1 - decay_offset is formed in integers, as optax forms it in int32: from
    a float32 count past 2^24 (a multiple of 2 there) t - offset = 2 became 1 or 3, and
    the updates were 11x off optax's at the next step."""
    offset = count - (count % 2**24)  # 2^25 or 2^24: the shifted step starts near 1
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.normal(size=4), jnp.float32)}
    grads = [{"w": jnp.asarray(rng.normal(size=4), jnp.float32)} for _ in range(4)]
    kw = dict(decay_offset=offset, multiply_by_parameter_scale=False)
    ours = gradtx.adafactor(0.1, convention="optax", eps=(1e-15, 1e-3), **kw)
    theirs = optax.adafactor(0.1, eps=1e-30, **kw)
    s = optax.tree_utils.tree_set(ours.init(params), count=jnp.asarray(count, jnp.int32))
    r = optax.tree_utils.tree_set(theirs.init(params), count=jnp.asarray(count, jnp.int32))
    for g in grads:
        u, s = ours.update(g, s, params)
        v, r = theirs.update(g, r, params)
        chex.assert_trees_all_close(u, v, rtol=1e-6, atol=0)
