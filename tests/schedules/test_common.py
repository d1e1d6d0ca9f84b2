"""Every gradtx schedule is a pytree and a function: ``jax.jit(schedule)``,
``jax.vmap(schedule)`` over counts, ``jax.vmap`` over a batch of schedules'
fields and ``jax.grad(schedule)`` with respect to a float count all work, as
for an optax schedule, and give the schedule's own numbers (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import schedules as S
from gradtx._base import is_schedule

# factory name -> v -> a schedule whose values depend on v (swept by vmap below).
EXAMPLES = {
    "constant": lambda v: S.constant(v),
    "piecewise_constant": lambda v: S.piecewise_constant(v, {10: 0.5, 40: 2.0, 90: 0.1}),
    "exponential_decay": lambda v: S.exponential_decay(v, 7, 0.8, transition_begin=20),
    "inverse_time_decay": lambda v: S.inverse_time_decay(v, 20.0, 0.75),
    "inverse_sqrt_decay": lambda v: S.inverse_sqrt_decay(v),
    "polynomial": lambda v: S.polynomial(v, 0.02, 1.7, 150, 25),
    "linear": lambda v: S.linear(0.0, v, 60, 10),
    "cosine_decay": lambda v: S.cosine_decay(v, 90, alpha=0.05, exponent=1.5, past_end="cycle"),
    "constant_warmup": lambda v: S.constant_warmup(v, 0.25, 40),
    "swa_lr": lambda v: S.swa_lr(v, 0.05, 100),
    "product": lambda v: S.product(
        [S.constant_warmup(v, 0.1, 20), S.exponential_decay(1.0, 1, 0.99)]
    ),
    "warmup_cosine_decay": lambda v: S.warmup_cosine_decay(0.0, v, 30, 160, end_value=0.01),
    "sgdr": lambda v: S.sgdr(v, 5, period_mult=2, min_value=0.01),
    "cyclical": lambda v: S.cyclical(0.01, v, 20, mode="exp_range", gamma=0.995),
    "one_cycle": lambda v: S.one_cycle(257, v, pct_start=0.25, three_phase=True),
    "one_cycle_momentum": lambda v: S.one_cycle_momentum(257, 0.8, v, anneal="linear"),
    "join": lambda v: S.join([S.linear(0.0, v, 20), S.sgdr(v, 10, period_mult=2)], [20]),
}
VALUES = (0.1, 0.2, 0.7)
N = 300
# Counts the eager reference is computed at (one dispatch per op per count: kept short).
COUNTS = np.unique(np.r_[np.arange(20), np.arange(20, N, 7), N - 1]).astype(np.int32)
# Counts away from every example's kinks (phase ends, restarts, boundaries).
FLOAT_COUNTS = (2.37, 17.61, 51.13, 101.43, 250.77)


def _public_factories():
    return {n for n in S.__all__ if n[0].islower() and callable(getattr(S, n))}


def test_every_factory_has_an_example():
    assert set(EXAMPLES) == _public_factories()


def _eager(schedule, counts):
    """One call per count, outside any transformation: the reference values."""
    return np.asarray([float(schedule(jnp.asarray(k))) for k in counts])


def _jitted(schedule, counts):
    """One jitted call per count: the reference for the vmap tests (``test_jit`` holds it
    to the eager values; an eager call of a long schedule dispatches ~170 ops)."""
    one = jax.jit(schedule)
    return np.asarray([float(one(jnp.asarray(k, jnp.int32))) for k in counts])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_jit(x64, name):
    schedule = EXAMPLES[name](0.2)
    assert is_schedule(schedule)
    expected = _eager(schedule, COUNTS)
    assert np.ptp(expected) > 0 or name == "constant"
    jitted = jax.jit(schedule)
    got = np.asarray([float(jitted(jnp.asarray(k, jnp.int32))) for k in COUNTS[:10]])
    np.testing.assert_allclose(got, expected[:10], rtol=1e-12, atol=1e-300)
    # Again, with a fresh jit of the same schedule, over an array of counts.
    np.testing.assert_allclose(jax.jit(schedule)(COUNTS), expected, rtol=1e-12, atol=1e-300)
    assert jax.jit(schedule)(jnp.asarray(3, jnp.int32)).dtype == jnp.float64


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_vmap_over_counts(x64, name):
    schedule = EXAMPLES[name](0.2)
    np.testing.assert_allclose(
        jax.vmap(schedule)(jnp.asarray(COUNTS)), _jitted(schedule, COUNTS), rtol=1e-12, atol=1e-300
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_vmap_over_fields(x64, name):
    """A batch of schedules (their fields stacked) evaluated in one vmap."""
    members = [EXAMPLES[name](v) for v in VALUES]
    batch = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *members)
    assert type(batch) is type(members[0])
    counts = jnp.asarray(COUNTS)
    got = jax.jit(jax.vmap(lambda s: jax.vmap(s)(counts)))(batch)
    for i, member in enumerate(members):
        np.testing.assert_allclose(got[i], _jitted(member, COUNTS), rtol=1e-12, atol=1e-300)
    # fields and counts batched together
    ks = jnp.asarray([5, 77, 211], jnp.int32)
    paired = jax.vmap(lambda s, k: s(k))(batch, ks)
    want = [float(m(k)) for m, k in zip(members, [5, 77, 211])]
    np.testing.assert_allclose(paired, want, rtol=1e-12, atol=1e-300)
    if name != "one_cycle_momentum":  # its VALUES set the max momentum, never reached at 0
        assert len(set(np.round(np.asarray(got[:, 30]), 12))) == len(VALUES)


# A power with exponent < 1 reaching 0 where the schedule then holds, and a
# huge negative power before transition_begin: jnp.power's inf times the
# chain rule's 0 made these gradients NaN.
EDGES = {
    "polynomial_sqrt": (S.polynomial(0.3, 0.0, 0.5, 50), 0, 50),
    "cosine_sqrt": (S.cosine_decay(0.3, 50, exponent=0.5), 0, 50),
    "warmup_cosine_sqrt": (S.warmup_cosine_decay(0.0, 0.3, 10, 50, exponent=0.5), 10, 50),
}
LATE_START = S.exponential_decay(0.1, 1, 0.5, transition_begin=5000)


@pytest.mark.parametrize("name", sorted(EXAMPLES) + sorted(EDGES))
def test_grad_is_finite_everywhere(x64, name):
    schedule = EXAMPLES[name](0.2) if name in EXAMPLES else EDGES[name][0]
    ks = jnp.concatenate([jnp.arange(0.0, 400.0, 0.5), jnp.asarray([1e6, 2.0**31 - 1])])
    values = jax.jit(jax.vmap(schedule))(ks)
    grads = jax.jit(jax.vmap(jax.grad(schedule)))(ks)
    assert np.isfinite(values).all() and (values >= 0).all()
    assert np.isfinite(grads).all()
    if name in EDGES:  # decreasing from start to end, then held: a zero gradient
        _, start, end = EDGES[name]
        ks, grads = np.asarray(ks), np.asarray(grads)
        np.testing.assert_array_equal(grads[ks > end], 0.0)
        assert (grads[(ks > start + 1) & (ks < end)] < 0).all()


def test_grad_before_a_late_transition_begin_is_zero(x64):
    ks = jnp.arange(0.0, 5000.0, 7.0)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.grad(LATE_START)))(ks), 0.0)
    np.testing.assert_allclose(jax.grad(LATE_START)(5010.0), 0.1 * 0.5**10 * np.log(0.5))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_grad_wrt_float_count(x64, name):
    """``jax.grad(schedule)`` equals a central difference of the schedule."""
    schedule = EXAMPLES[name](0.2)
    grad = jax.grad(schedule)
    h = 1e-5
    for k in FLOAT_COUNTS:
        g = grad(jnp.asarray(k, jnp.float64))
        assert g.dtype == jnp.float64
        fd = (float(schedule(jnp.asarray(k + h))) - float(schedule(jnp.asarray(k - h)))) / (2 * h)
        np.testing.assert_allclose(float(g), fd, rtol=1e-6, atol=1e-10)
    # jit of the gradient, vmapped over counts, agrees too
    ks = jnp.asarray(FLOAT_COUNTS, jnp.float64)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(grad))(ks), [float(grad(k)) for k in ks], rtol=1e-12, atol=1e-300
    )
