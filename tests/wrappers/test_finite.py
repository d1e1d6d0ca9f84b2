"""apply_if_finite around every gradtx optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import make_problem
from tests.registry import OPTIMIZER_NAMES
from tests.registry import REGISTRY

# Every registered optimizer (one entry per case of tests/registry.py), plus
# settings worth covering on top.
EXTRA = {
    "sgd_momentum_l2": lambda: gradtx.sgd(0.05, 0.9, nesterov=True, weight_decay=0.1),
    "adam_schedule": lambda: gradtx.adam(lambda t: 1e-2 / (1 + t.astype(jnp.float64))),
    "sgdw_momentum": lambda: gradtx.sgdw(0.05, 0.9, weight_decay=0.1),
}
FACTORIES = {c.id: (lambda c=c: c.make(c.lr)) for c in REGISTRY} | EXTRA
CASES = {c.id: c for c in REGISTRY}


def test_every_optimizer_is_covered():
    assert set(OPTIMIZER_NAMES) <= {c.name for c in REGISTRY}


def _jitted(opt, name=None):
    """``opt``'s update, jitted (for a case whose update needs the loss, ``case.update``:
    see tests/registry.py)."""
    return jax.jit(CASES[name].update(opt) if name in CASES else opt.update)


def _run(opt, params, grads, name=None, update=None):
    """Params, states and updates after each step (``update``: a jitted one to reuse)."""
    update = update or _jitted(opt, name)
    p, state = params, opt.init(params)
    out = []
    for g in grads:
        u, state = update(g, state, p)
        p = gradtx.apply_updates(p, u)
        out.append((p, state, u))
    return out


@pytest.mark.parametrize(
    "name, bad",
    [(name, np.nan) for name in sorted(FACTORIES)] + [("adam", np.inf), ("sgd", -np.inf)],
)
def test_a_bad_step_changes_nothing(x64, name, bad):
    params, grads = make_problem(0, steps=6, scale=0.5)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    grads = [{k: jnp.asarray(v) for k, v in g.items()} for g in grads]
    poisoned = {"w": grads[0]["w"].at[1, 2].set(bad), "b": grads[0]["b"]}
    opt = gradtx.apply_if_finite(FACTORIES[name](), max_consecutive_errors=3)
    update = _jitted(opt, name)  # one program for both runs
    with_bad = _run(opt, params, grads[:3] + [poisoned] + grads[3:], name, update)
    without = _run(opt, params, grads, name, update)
    p_before, s_before, _ = with_bad[2]
    p_bad, s_bad, u_bad = with_bad[3]
    for leaf in jax.tree.leaves(u_bad):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    jax.tree.map(np.testing.assert_array_equal, p_bad, p_before)
    jax.tree.map(np.testing.assert_array_equal, s_bad.inner_state, s_before.inner_state)
    assert int(s_bad.notfinite_count) == 1 and not bool(s_bad.last_finite)
    # later finite steps continue exactly as if the bad step never came
    for (p, s, _), (p_ref, s_ref, _) in zip(with_bad[4:], without[3:]):
        jax.tree.map(np.testing.assert_array_equal, p, p_ref)
        jax.tree.map(np.testing.assert_array_equal, s.inner_state, s_ref.inner_state)
    final = with_bad[-1][1]
    assert int(final.notfinite_count) == 0 and int(final.total_notfinite) == 1
    # and the wrapper does not change finite steps: same as the bare optimizer
    bare = _run(FACTORIES[name](), params, grads, name)
    for (p, _, _), (p_ref, _, _) in zip(without, bare):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13), p, p_ref)


def test_gives_up_after_max_consecutive_errors_like_optax():
    opt = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=2)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    nan = {"w": jnp.array([jnp.nan, 1.0])}
    for expected in (1, 2):
        u, state = opt.update(nan, state, params)
        assert int(state.notfinite_count) == expected
        np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    u, state = opt.update(nan, state, params)  # third in a row: let through
    assert int(state.notfinite_count) == 3 and int(state.total_notfinite) == 3
    assert np.isnan(u["w"][0]) and float(u["w"][1]) == pytest.approx(-0.1)
    u, state = opt.update({"w": jnp.ones(2)}, state, params)
    assert int(state.notfinite_count) == 0 and bool(state.last_finite)


def test_non_finite_output_is_skipped_too():
    """A finite gradient whose update is not finite (here lr = inf) is also skipped.

    The infinite rate is set under jit: ``set_hyperparams`` refuses ``inf`` for a
    learning rate where it can see it, but takes a traced value as data, unchecked."""
    opt = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=5)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"learning_rate=inf\): learning_rate must be in"):
        gradtx.set_hyperparams(opt.init(params), learning_rate=np.inf)
    with pytest.raises(ValueError, match=r"learning_rate=inf as a float32 array\): learning_rate"):
        gradtx.set_hyperparams(opt.init(params), learning_rate=jnp.asarray(jnp.inf, jnp.float32))
    set_traced = jax.jit(lambda s, lr: gradtx.set_hyperparams(s, learning_rate=lr))
    state = set_traced(opt.init(params), np.inf)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == np.inf
    u, state = opt.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    assert int(state.notfinite_count) == 1


def test_passes_grads_and_extras_through(x64):
    """Inside a chain after momentum, the wrapped statistic still reads the chain's grads."""
    params, grads = make_problem(1, steps=5)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    grads = [{k: jnp.asarray(v) for k, v in g.items()} for g in grads]

    def make(wrap):
        rms = gradtx.scale_by_rms(0.99, 1e-8)
        return gradtx.chain(
            gradtx.add_momentum(0.9, ema=True),
            gradtx.apply_if_finite(rms, 2) if wrap else rms,
            gradtx.scale_by_learning_rate(0.1),
        )

    a = _run(make(True), params, grads)
    b = _run(make(False), params, grads)
    for (p, _, _), (q, _, _) in zip(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14), p, q)
    opt = gradtx.apply_if_finite(gradtx.sgd(0.1), 1)
    opt.update(params, opt.init(params), params, value=1.0, unknown=object())


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        gradtx.apply_if_finite(gradtx.sgd(), -1)
    with pytest.raises(TypeError, match="max_consecutive_errors"):
        gradtx.apply_if_finite(gradtx.sgd(), 2.5)
    with pytest.raises(TypeError, match="apply_if_finite"):
        gradtx.apply_if_finite("sgd", 2)


def test_a_skipped_step_has_a_finite_meta_gradient(x64):
    # d loss / d lr across a skipped step: the skipped step must contribute nothing,
    # not 0 · inf = NaN from the discarded inner update (the inf enters through a
    # select, so the caller's own gradient computation has a finite derivative).
    def loss(p):
        return jnp.sum(jnp.sin(p) ** 2)

    def run(lr, wrap):
        opt = gradtx.apply_if_finite(gradtx.adam(0.05), 3) if wrap else gradtx.adam(0.05)
        p = jnp.array([1.0, -0.5, 0.3])
        state = gradtx.set_hyperparams(opt.init(p), learning_rate=lr)
        for k in range(4):
            g = jax.grad(loss)(p)
            if k == 1:
                if not wrap:
                    continue  # the reference leaves the bad step out
                g = jnp.where(jnp.arange(3) == 1, jnp.inf, g)
            u, state = opt.update(g, state, p)
            p = p + u
        return loss(p)

    lr = jnp.asarray(0.05)
    np.testing.assert_allclose(run(lr, True), run(lr, False), rtol=1e-12)
    got = jax.grad(lambda lr: run(lr, True))(lr)
    want = jax.grad(lambda lr: run(lr, False))(lr)
    np.testing.assert_allclose(got, want, rtol=1e-10)
