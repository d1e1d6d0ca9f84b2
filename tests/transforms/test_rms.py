"""scale_by_rms: hand-computed steps, its options, and its low-precision storage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _steps(tx, grads, params=None):
    params = jnp.zeros_like(grads[0]) if params is None else params
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(g, state, params)
        out.append(np.asarray(u))
    return out, state


def test_hand_computed_ema_with_and_without_bias_correction(x64):
    g1, g2 = jnp.asarray([3.0, -4.0]), jnp.asarray([1.0, 2.0])
    (u1, u2), _ = _steps(gradtx.scale_by_rms(0.5, eps=0.0), [g1, g2])
    v1 = 0.5 * np.asarray(g1) ** 2
    v2 = 0.5 * v1 + 0.5 * np.asarray(g2) ** 2
    np.testing.assert_allclose(u1, np.asarray(g1) / np.sqrt(v1), rtol=1e-14)
    np.testing.assert_allclose(u2, np.asarray(g2) / np.sqrt(v2), rtol=1e-14)
    (_, b2), _ = _steps(gradtx.scale_by_rms(0.5, eps=0.0, bias_correction=True), [g1, g2])
    np.testing.assert_allclose(b2, np.asarray(g2) / np.sqrt(v2 / (1 - 0.5**2)), rtol=1e-14)


def test_eps_inside_and_outside_the_root(x64):
    g = jnp.asarray([0.3, -0.2])
    v = 0.1 * np.asarray(g) ** 2
    (out,), _ = _steps(gradtx.scale_by_rms(0.9, eps=1e-2), [g])
    np.testing.assert_allclose(out, np.asarray(g) / (np.sqrt(v) + 1e-2), rtol=1e-14)
    (out,), _ = _steps(gradtx.scale_by_rms(0.9, eps=1e-2, eps_in_sqrt=True), [g])
    np.testing.assert_allclose(out, np.asarray(g) / np.sqrt(v + 1e-2), rtol=1e-14)


def test_amsgrad_max_of_v_or_of_v_hat(x64):
    grads = [jnp.asarray([4.0]), jnp.asarray([0.1]), jnp.asarray([0.1])]
    d = 0.5
    v, v_max, vhat_max = 0.0, 0.0, 0.0
    want_v, want_vhat = [], []
    for t, g in enumerate(grads, start=1):
        v = d * v + (1 - d) * float(g[0]) ** 2
        v_max = max(v_max, v)
        vhat_max = max(vhat_max, v / (1 - d**t))
        want_v.append(float(g[0]) / np.sqrt(v_max / (1 - d**t)))
        want_vhat.append(float(g[0]) / np.sqrt(vhat_max))
    for max_of, want in (("v", want_v), ("v_hat", want_vhat)):
        tx = gradtx.scale_by_rms(d, 0.0, bias_correction=True, amsgrad=True, max_of=max_of)
        out, _ = _steps(tx, grads)
        np.testing.assert_allclose([o[0] for o in out], want, rtol=1e-13)


def test_centered_variance_is_clamped_at_zero():
    # A constant gradient: v - ḡ² is 0 in exact arithmetic, either sign in rounding.
    tx = gradtx.scale_by_rms(0.9, eps=1e-8, centered=True)
    g = jnp.full(3, 0.7)
    state = tx.init(g)
    for _ in range(2000):
        u, state = tx.update(g, state)
        assert bool(jnp.all(jnp.isfinite(u)))


def test_centered_with_bias_correction_needs_an_initial_scale():
    with pytest.raises(ValueError, match=r"centered=True, bias_correction=True"):
        gradtx.scale_by_rms(centered=True, bias_correction=True)
    with pytest.raises(ValueError, match=r"gradtx.rmsprop\(centered=True, bias_correction=True\)"):
        gradtx.rmsprop(centered=True, bias_correction=True)
    tx = gradtx.scale_by_rms(0.9, centered=True, bias_correction=True, initial_scale=0.5)
    u, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    assert bool(jnp.all(jnp.isfinite(u)))


def test_reads_the_chains_gradient_after_momentum(x64):
    g = jnp.asarray([1.0, -3.0])
    chained = gradtx.chain(gradtx.add_momentum(0.5), gradtx.scale_by_rms(0.9, 0.0))
    (u,), _ = _steps(chained, [g])
    # momentum's first output is g itself; the denominator is from g, not from it
    np.testing.assert_allclose(u, np.asarray(g) / np.sqrt(0.1 * np.asarray(g) ** 2), rtol=1e-14)
    state = chained.init(g)
    _, state = chained.update(g, state)
    u2, _ = chained.update(g, state)
    v2 = 0.9 * 0.1 * np.asarray(g) ** 2 + 0.1 * np.asarray(g) ** 2
    np.testing.assert_allclose(u2, 1.5 * np.asarray(g) / np.sqrt(v2), rtol=1e-14)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32), (jnp.complex64, jnp.float32)],
)
def test_squares_are_stored_where_they_fit(dtype, stored):
    tx = gradtx.scale_by_rms(0.999, 1e-8)
    params = jnp.ones(3, dtype)
    state = tx.init(params)
    g = jnp.full(3, 1e-3, dtype)  # (1 - b2) g² = 1e-9: below float16's range
    u, state = jax.jit(tx.update)(g, state)
    assert state.inner_state.nu.dtype == stored and u.dtype == dtype
    # v = 1e-9 kept, so the step is g / |g|, not g / eps (float16) or wrong by 0.999 -> 1
    np.testing.assert_allclose(np.asarray(u.real.astype(jnp.float32)), 1 / np.sqrt(1e-3), rtol=2e-2)


def test_hyperparameters_live_in_state():
    tx = gradtx.scale_by_rms(0.9, 1e-6, eps_root=1e-9)
    state = tx.init(jnp.ones(2))
    hp = gradtx.get_hyperparams(state)
    assert set(hp) == {"decay", "eps", "eps_root"}  # initial_scale: read by init only


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_centered_overflow_gives_zero_steps_not_nan(dtype):
    # v and ḡ² both overflow to inf beyond |g| ~ 1e19: v - ḡ² must not be inf - inf.
    opt = gradtx.rmsprop(0.01, centered=True)
    p = jnp.ones(2, dtype)
    g = jnp.full(2, 1e30, dtype)
    for update in (opt.update, jax.jit(opt.update)):
        u, _ = update(g, opt.init(p), p)
        assert not bool(jnp.any(jnp.isnan(u))), u


def test_ema_weight_of_float32_params_is_rounded_once_under_x64(x64):
    """torch forms ``1 - b2`` in double and rounds it once to float32; so does the EMA of
    float32 params when the rate is stored in float64 (1 - f32(b2) is 19% off here)."""
    b2 = 0.9999999
    g = jnp.asarray([0.3, -1.2, 0.05], jnp.float32)
    tx = gradtx.scale_by_rms(b2)
    _, state = tx.update(g, tx.init(jnp.zeros(3, jnp.float32)))
    nu = state.inner_state.nu
    assert nu.dtype == jnp.float32
    expected = (np.float32(1 - b2) * np.asarray(g)) * np.asarray(g)  # torch's addcmul order
    np.testing.assert_array_equal(np.asarray(nu), expected)
    assert not np.allclose(expected, (np.float32(1) - np.float32(b2)) * np.square(np.asarray(g)))


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999, 0.9999, 0.99999, 0.999999])
def test_float32_bias_correction_keeps_its_digits(decay):
    # 1 - decay**t for the float32 decay actually stored, against the same in float64:
    # a few float32 ulps at every step (optax's 1 - decay**t: up to ~eps / (1 - decay**t)
    # from step 2, 1.5e-2 at 0.999999).
    t = np.array([1, 2, 3, 10, 100, 1_000, 10_000, 1_000_000], np.int32)
    stored = np.float64(np.float32(decay))
    want = 1 - stored ** t.astype(np.float64)  # float64: ~1e-10 relative at worst
    got = np.asarray(gradtx._numerics.bias_correction(jnp.float32(decay), jnp.asarray(t)))
    np.testing.assert_allclose(got, want, rtol=4 * float(np.finfo(np.float32).eps))
    # step 1: 1 - decay to the last bit (Adam's first step is exactly -lr sign(g))
    assert got[0] == np.float32(1) - np.float32(decay)


def test_the_max_of_v_and_the_max_of_v_hat_are_states_of_their_own():
    """torch's AMSGrad keeps the max of v, optax's the max of v̂: one held in place of
    the other was bias-corrected twice (16x too small a step) or not at all."""
    params = jnp.ones(3)
    raw = gradtx.scale_by_rms(0.999, bias_correction=True, amsgrad=True, max_of="v")
    corrected = gradtx.scale_by_rms(0.999, bias_correction=True, amsgrad=True, max_of="v_hat")
    assert type(raw.init(params).inner_state) is gradtx.ScaleByRmsState
    assert type(corrected.init(params).inner_state) is gradtx.ScaleByRmsCorrectedMaxState
    for opt, other in [(gradtx.amsgrad(0.1), gradtx.amsgrad(0.1, convention="optax")),
                       (gradtx.adam(0.1, amsgrad=True, max_of="v_hat"), gradtx.amsgrad(0.1))]:  # fmt: skip
        for a, b in [(opt, other), (other, opt)]:
            with pytest.raises(ValueError, match=r"state does not match .*nu_(hat_)?max"):
                a.update(params, b.init(params), params)
