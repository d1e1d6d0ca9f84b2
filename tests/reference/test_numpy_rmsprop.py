"""RMSProp conventions that no package implements, against a NumPy reference:
the variant that starts from the first squared gradient (v_1 = g_1²) and the
momentum buffer that keeps each step's learning rate (convention (B))."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx


def numpy_rmsprop(
    params,
    grads,
    lr,
    decay,
    eps,
    *,
    momentum=0.0,
    centered=False,
    init_from_first=False,
    lr_in_momentum=False,
    eps_in_sqrt=False,
    nesterov=False,
):
    """Plain float64 loop, written from the equations in ALGORITHMS.md §5."""
    theta = {k: v.copy() for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    mean = {k: np.zeros_like(p) for k, p in params.items()}
    buf = {k: np.zeros_like(p) for k, p in params.items()}
    out = []
    for t, g in enumerate(grads, start=1):
        eta = lr(t - 1)
        for k in theta:
            if init_from_first and t == 1:
                v[k], mean[k] = g[k] ** 2, g[k].copy()
            else:
                v[k] = decay * v[k] + (1 - decay) * g[k] ** 2
                mean[k] = decay * mean[k] + (1 - decay) * g[k]
            var = v[k] - mean[k] ** 2 if centered else v[k]
            d = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
            s = g[k] / d
            if momentum == 0.0:
                step = eta * s
            elif lr_in_momentum:  # (B): b_t = μ b_{t-1} + η_t s_t;  θ -= b_t
                buf[k] = momentum * buf[k] + eta * s
                step = eta * s + momentum * buf[k] if nesterov else buf[k]
            else:  # (A): b_t = μ b_{t-1} + s_t;  θ -= η_t b_t
                buf[k] = momentum * buf[k] + s
                step = eta * (s + momentum * buf[k] if nesterov else buf[k])
            theta[k] = theta[k] - step
        out.append({k: x.copy() for k, x in theta.items()})
    return out


def _schedule(k):
    return 0.05 * 0.8**k


def _jnp_schedule(k):
    return 0.05 * 0.8 ** k.astype(jnp.float64)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_init_from_first_matches_numpy(x64, momentum):
    params, grads = make_problem(7)
    ref = numpy_rmsprop(
        params, grads, lambda k: 0.01, 0.9, 1e-8, momentum=momentum, init_from_first=True
    )
    ours = gradtx.rmsprop(0.01, 0.9, momentum=momentum, init_from_first=True)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


def test_init_from_first_primitive_matches_numpy(x64):
    params, grads = make_problem(8)
    ref = numpy_rmsprop(
        params, grads, lambda k: 0.02, 0.95, 1e-6, init_from_first=True, eps_in_sqrt=True
    )
    tx = gradtx.chain(
        gradtx.scale_by_rms(0.95, 1e-6, eps_in_sqrt=True, init_from_first=True),
        gradtx.scale_by_learning_rate(0.02),
    )
    assert_trajectories_close(run_gradtx(tx, params, grads), ref)


def test_init_from_first_is_bias_corrected_zero_init_at_step_one_only(x64):
    params, grads = make_problem(9, steps=3)
    first = run_gradtx(gradtx.scale_by_rms(0.9, 0.0, init_from_first=True), params, grads)
    corrected = run_gradtx(gradtx.scale_by_rms(0.9, 0.0, bias_correction=True), params, grads)
    assert_trajectories_close(first[:1], corrected[:1])
    assert not np.allclose(first[1]["w"], corrected[1]["w"], rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_lr_in_momentum_matches_numpy_under_schedule(x64, nesterov):
    params, grads = make_problem(10)
    kw = dict(momentum=0.9, centered=True, nesterov=nesterov)
    ref = numpy_rmsprop(params, grads, _schedule, 0.99, 1e-8, lr_in_momentum=True, **kw)
    ours = gradtx.rmsprop(_jnp_schedule, 0.99, lr_in_momentum=True, **kw)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)
    # (A) is a different algorithm under a schedule: the comparison can fail.
    ref_a = numpy_rmsprop(params, grads, _schedule, 0.99, 1e-8, **kw)
    assert_trajectories_close(
        run_gradtx(gradtx.rmsprop(_jnp_schedule, 0.99, **kw), params, grads), ref_a
    )
    assert not np.allclose(ref[-1]["w"], ref_a[-1]["w"], rtol=1e-3)


def test_centered_init_from_first_is_rejected():
    with pytest.raises(ValueError, match=r"gradtx.rmsprop\(centered=True, init_from_first=True\)"):
        gradtx.rmsprop(centered=True, init_from_first=True)
