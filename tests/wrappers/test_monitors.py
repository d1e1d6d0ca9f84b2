"""track_norms and get_norms against norms computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import make_problem


def _norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x))) for x in jax.tree.leaves(tree))))


def _setup(seed):
    params, grads = make_problem(seed, steps=3)
    to = lambda t: {k: jnp.asarray(v, jnp.float64) for k, v in t.items()}  # noqa: E731
    return to(params), [to(g) for g in grads]


def test_wrapper_records_grad_update_and_param_norms(x64):
    params, grads = _setup(0)
    opt = gradtx.track_norms(gradtx.adam(0.1))
    bare = gradtx.adam(0.1)
    state, bare_state = opt.init(params), bare.init(params)
    assert all(np.isnan(float(v)) for v in gradtx.get_norms(state).values())
    update = jax.jit(opt.update)
    for g in grads:
        u, state = update(g, state, params)
        expected_u, bare_state = bare.update(g, bare_state, params)
        norms = gradtx.get_norms(state)
        assert set(norms) == {"grad_norm", "update_norm", "param_norm"}
        assert float(norms["grad_norm"]) == pytest.approx(_norm(g), rel=1e-14)
        assert float(norms["update_norm"]) == pytest.approx(_norm(expected_u), rel=1e-14)
        assert float(norms["param_norm"]) == pytest.approx(_norm(params), rel=1e-14)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), u, expected_u)
        params = gradtx.apply_updates(params, u)


def test_chain_member_at_the_end_sees_the_gradient_as_grads(x64):
    params, grads = _setup(1)
    opt = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.sgd(0.1, 0.9), gradtx.track_norms())
    state = opt.init(params)
    u, state = opt.update(grads[0], state, params)
    norms = gradtx.get_norms(state)
    # the chain's grads are the gradient as it entered sgd: the clipped one
    assert float(norms["grad_norm"]) == pytest.approx(1.0, rel=1e-14)
    assert float(norms["update_norm"]) == pytest.approx(_norm(u), rel=1e-14)
    assert float(norms["update_norm"]) == pytest.approx(0.1, rel=1e-14)


def test_chain_member_first_records_the_raw_gradient(x64):
    params, grads = _setup(2)
    opt = gradtx.chain(gradtx.track_norms(), gradtx.adam(0.1))
    assert isinstance(gradtx.track_norms(), gradtx.GradientMap)
    _, state = opt.update(grads[0], opt.init(params), params)
    norms = gradtx.get_norms(state)
    assert float(norms["grad_norm"]) == pytest.approx(_norm(grads[0]), rel=1e-14)
    assert float(norms["update_norm"]) == float(norms["grad_norm"])


def test_monitors_in_groups_are_named_by_group(x64):
    params, grads = _setup(3)
    opt = gradtx.partition(
        {"a": gradtx.track_norms(gradtx.sgd(0.1)), "b": gradtx.track_norms(gradtx.sgd(1.0))},
        {"w": "a", "b": "b"},
    )
    _, state = opt.update(grads[0], opt.init(params), params)
    norms = gradtx.get_norms(state)
    assert set(norms) == {f"{g}/{n}_norm" for g in "ab" for n in ("grad", "update", "param")}
    assert float(norms["a/grad_norm"]) == pytest.approx(_norm(grads[0]["w"]), rel=1e-14)
    assert float(norms["b/update_norm"]) == pytest.approx(_norm(grads[0]["b"]), rel=1e-14)
    assert float(norms["b/param_norm"]) == pytest.approx(_norm(params["b"]), rel=1e-14)
    assert gradtx.get_norms(gradtx.adam().init(params)) == {}


def test_needs_params():
    opt = gradtx.track_norms()
    with pytest.raises(ValueError, match="needs params"):
        opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.ones(2)}))


@pytest.mark.parametrize(
    "grads, error, message",
    [
        ({"w": jnp.ones(5)}, ValueError, r"updates leaf \['w'\] is float32\[5\] but the param"),
        ({"w": jnp.ones(2, jnp.bfloat16)}, ValueError, r"updates leaf \['w'\] is bfloat16\[2\]"),
        ({"w": jnp.ones(2, jnp.int32)}, TypeError, r"updates leaf \['w'\] has dtype int32"),
    ],
    ids=["shape", "dtype", "integer"],
)
def test_updates_are_checked_against_the_params_as_clip_does(grads, error, message):
    # Without an inner optimizer nothing else checks what the norms read.
    opt = gradtx.track_norms()
    params = {"w": jnp.ones(2)}
    with pytest.raises(error, match=r"^gradtx.track_norms(.update)?: " + message):
        opt.update(grads, opt.init(params), params)


def test_python_float_leaves_work_as_zero_d_arrays():
    params, grads = {"s": 1.5, "w": jnp.arange(3.0)}, {"s": 0.5, "w": jnp.ones(3)}
    for opt in (
        gradtx.track_norms(gradtx.adam(0.01)),
        gradtx.chain(gradtx.adam(0.01), gradtx.track_norms()),
    ):
        _, state = opt.update(grads, opt.init(params), params)
        norms = gradtx.get_norms(state)
        np.testing.assert_allclose(norms["grad_norm"], np.sqrt(0.25 + 3.0), rtol=1e-6)
        np.testing.assert_allclose(norms["param_norm"], np.sqrt(2.25 + 5.0), rtol=1e-6)
