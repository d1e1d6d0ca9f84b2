"""Unit tests for centralize and rectify (and when_rectified)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _np_centralize(g, axis=0):
    axes = tuple(a for a in range(g.ndim) if a != axis % g.ndim)
    return g - g.mean(axis=axes, keepdims=True)


def test_centralize_means_per_output_channel():
    rng = np.random.default_rng(0)
    g = {
        "b": rng.normal(size=5).astype(np.float32),
        "w": rng.normal(size=(4, 3)).astype(np.float32),
        "w3": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "conv": rng.normal(size=(3, 2, 2, 2)).astype(np.float32),
    }
    tx = gradtx.centralize()
    out, _ = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_array_equal(out["b"], g["b"])  # vectors untouched
    for k in ("w", "w3", "conv"):
        np.testing.assert_allclose(out[k], _np_centralize(g[k]), rtol=1e-5, atol=1e-6)
        means = np.asarray(out[k]).reshape(out[k].shape[0], -1).mean(axis=1)
        np.testing.assert_allclose(means, 0.0, atol=1e-6)


def test_centralize_conv_only_and_channel_last():
    rng = np.random.default_rng(1)
    g = {"w": rng.normal(size=(4, 3)), "conv": rng.normal(size=(2, 2, 3, 5))}
    g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
    out, _ = gradtx.centralize(conv_only=True).update(g, gradtx.EmptyState())
    np.testing.assert_array_equal(out["w"], g["w"])
    np.testing.assert_allclose(out["conv"], _np_centralize(np.asarray(g["conv"])), atol=1e-6)
    out, _ = gradtx.centralize(channel_axis=-1).update(g, gradtx.EmptyState())
    for k in g:
        np.testing.assert_allclose(out[k], _np_centralize(np.asarray(g[k]), -1), atol=1e-6)


def test_centralize_is_a_gradient_map_feeding_statistics():
    # In a chain, momentum and rms after centralize see the centralised gradient.
    assert isinstance(gradtx.centralize(), gradtx.GradientMap)
    g = {"w": jnp.array([[1.0, 3.0], [2.0, 2.0]])}
    tx = gradtx.chain(gradtx.centralize(), gradtx.add_momentum(0.9, ema=True), gradtx.rectify())
    out, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(
        state[2].inner_state.nu["w"], 0.001 * np.array([[1.0, 1.0], [0.0, 0.0]]), rtol=1e-4
    )
    np.testing.assert_allclose(out["w"], 0.1 * np.array([[-1.0, 1.0], [0.0, 0.0]]), rtol=1e-6)


def test_centralize_errors():
    with pytest.raises(TypeError, match=r"gradtx.centralize\(conv_only=1\)"):
        gradtx.centralize(conv_only=1)
    with pytest.raises(ValueError, match="channel_axis=2"):
        gradtx.centralize(channel_axis=2).update({"w": jnp.ones((2, 2))}, gradtx.EmptyState())


def _np_rectify(b2, eps, thr, grads_seq, inputs, compare=">", untractable="sgd", eps_on="v"):
    """Direct transcription of RAdam's rectification, one leaf, float64."""
    v = np.zeros_like(grads_seq[0])
    rho_inf = 2 / (1 - b2) - 1
    out = []
    for t, (g, u) in enumerate(zip(grads_seq, inputs), start=1):
        v = b2 * v + (1 - b2) * g * g
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho > thr if compare == ">" else rho >= thr:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            if eps_on == "v":
                out.append(u * r * math.sqrt(1 - b2**t) / (np.sqrt(v) + eps))
            else:
                out.append(u * r / (np.sqrt(v / (1 - b2**t)) + eps))
        else:
            out.append(u if untractable == "sgd" else 0 * u)
    return out


@pytest.mark.parametrize(
    "opts",
    [{}, {"compare": ">="}, {"untractable": "skip"}, {"eps_on": "v_hat"}],
)
def test_rectify_matches_transcription_and_reads_grads(x64, opts):
    rng = np.random.default_rng(2)
    b2, eps, thr = 0.99, 1e-3, 4.5
    gs = [rng.normal(size=3) for _ in range(12)]
    us = [rng.normal(size=3) for _ in range(12)]
    expected = _np_rectify(b2, eps, thr, gs, us, **opts)
    tx = gradtx.rectify(b2, eps, thr, **opts)
    state = tx.init(jnp.zeros(3))
    update = jax.jit(tx.update)
    for t, (g, u, e) in enumerate(zip(gs, us, expected), start=1):
        out, state = update(jnp.asarray(u), state, grads=jnp.asarray(g))
        np.testing.assert_allclose(out, e, rtol=1e-12, err_msg=f"step {t}")
    assert int(state.count) == 12


def test_rectify_threshold_crossing_step_and_compare():
    # For b2 = 0.999, rho_t crosses 5 between t = 5 (4.996) and t = 6 (5.994).
    tx = gradtx.rectify(0.999, 0.0, untractable="skip")
    g = jnp.ones(2)
    state = tx.init(g)
    moved = []
    for _ in range(7):
        out, state = tx.update(g, state)
        moved.append(bool(jnp.any(out != 0)))
    assert moved == [False] * 5 + [True] * 2
    # rho_1 = 1 exactly: against 1 (a threshold the factories refuse, as r_t is not real
    # past it), ">" is not tractable and ">=" is.
    from gradtx.transforms.rectify import rectification

    for compare, steps in [(">", False), (">=", True)]:
        tractable, _, _ = rectification(jnp.float32(0.9), jnp.asarray(1, jnp.int32), 1.0, compare)
        assert bool(tractable) is steps


@pytest.mark.parametrize("b2", [0.5, 0.9, 0.999, 0.9999, 0.99999, 0.999999])
def test_rectification_in_float32_follows_float64(b2):
    """rho_t and r_t in float32 against the float64 formula (of the same float32 b2):
    rho_t = rho_inf - 2 t b2^t / (1 - b2^t) was a difference of two numbers near
    rho_inf (2e5 at 0.99999), which took the rectified branch at step 5 and gave r_t
    31% off at 0.9999."""
    from gradtx.transforms.rectify import rectification

    b = float(np.float32(b2))
    rho_inf = 2 / (1 - b) - 1
    for t in [1, 2, 4, 5, 6, 7, 10, 100, 10**4, 10**6]:
        rho = rho_inf - 2 * t * b**t / (1 - b**t)
        tractable, r, _ = rectification(jnp.float32(b2), jnp.asarray(t, jnp.int32), 5.0, ">")
        assert bool(tractable) == (rho > 5), (b2, t, rho)
        if rho > 5:
            want = math.sqrt(
                (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
            )
            assert abs(float(r) - want) <= 2e-6 * want, (b2, t, float(r), want)


def test_rectify_hyperparams_and_errors():
    state = gradtx.rectify(0.99, 1e-6, 4.0).init(jnp.zeros(2))
    hp = gradtx.get_hyperparams(state)
    assert {k: float(v) for k, v in hp.items()} == pytest.approx(
        {"b2": 0.99, "eps": 1e-6, "threshold": 4.0}
    )
    with pytest.raises(ValueError, match=r"gradtx.rectify\(b2=1.0\): b2 must be in \[0, 1\)"):
        gradtx.rectify(1.0)
    with pytest.raises(ValueError, match="compare"):
        gradtx.rectify(compare="<")
    with pytest.raises(ValueError, match="untractable"):
        gradtx.rectify(untractable="adam")
    # Below 4, 2 < rho_t < 4 would pass: r_t's root of a negative number (optax: NaN).
    for make in (gradtx.rectify, gradtx.radam, gradtx.ranger):
        with pytest.raises(ValueError, match=r"threshold=3.5\): threshold must be in \[4, "):
            make(threshold=3.5)


@pytest.mark.parametrize("make", [gradtx.rectify, gradtx.radam, gradtx.ranger])
def test_a_threshold_below_four_given_as_data_steps_nan_not_zero(make):
    # A traced JAX array is data, so it is not range-checked: at b2 = 0.999, rho_4 =
    # 3.998 passes a threshold of 3 while r_4 is the root of a negative number.  (A
    # known one is refused as the number is.)
    with pytest.raises(ValueError, match=r"threshold=3.0 as a float32 array\): threshold must be"):
        make(threshold=jnp.asarray(3.0, jnp.float32))
    g = jnp.full(3, 0.5)
    state = jax.jit(lambda t: make(threshold=t).init(g))(3.0)
    step = jax.jit(lambda g, s, t: make(threshold=t).update(g, s, g))
    outs = []
    for _ in range(6):
        out, state = step(g, state, 3.0)
        outs.append(np.asarray(out))
    assert np.all(np.isnan(outs[3])), outs[3]
    assert np.all(np.isfinite(outs[:3])) and np.all(np.isfinite(outs[4:]))
    assert np.all(np.asarray(outs[4]) != 0)


def test_when_rectified_gates_inner_transform():
    tx = gradtx.when_rectified(gradtx.scale(3.0), 0.999, 5.0)
    u = jnp.ones(2)
    state = tx.init(u)
    outs = []
    for _ in range(7):
        out, state = tx.update(u, state)
        outs.append(float(out[0]))
    assert outs == [1.0] * 5 + [3.0] * 2


def test_rectify_keeps_dtypes():
    for dtype in (jnp.float32, jnp.bfloat16):
        tx = gradtx.rectify()
        p = jnp.ones(3, dtype)
        state = tx.init(p)
        for _ in range(7):
            out, new_state = jax.jit(tx.update)(p, state)
            assert out.dtype == dtype
            assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(
                lambda x: x.dtype, state
            )
            state = new_state


def test_the_rectification_is_traced_once_for_eager_steps_and_gradients(monkeypatch):
    """``_control.once`` runs it in a conditional; built per call, eager steps and eager
    ``jax.grad`` traced and compiled that conditional at every step (0.2 s a step)."""
    from gradtx.transforms import rectify as module

    traces = []
    original = module._rectification

    def counted(*args, **kwargs):
        traces.append(1)  # Python side effect: runs once per trace
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_rectification", counted)
    monkeypatch.setattr(module, "_RECTIFICATION", {">": functools.partial(counted, compare=">")})
    opt = gradtx.rectify(0.99)
    params = jnp.ones(3)
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update(params, state, params)
    assert len(traces) == 1

    def loss(b2):
        s = gradtx.set_hyperparams(opt.init(params), b2=b2)
        return jnp.sum(opt.update(params, s, params)[0])

    for _ in range(3):
        jax.grad(loss)(0.9)
    assert len(traces) == 1  # the derivative differentiates the same trace
