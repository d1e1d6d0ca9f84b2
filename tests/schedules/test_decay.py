"""The monotone schedules (constant, piecewise constant, exponential, inverse-time,
inverse square root, polynomial, linear) against torch, optax and closed forms."""

import math
import re
import warnings
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from gradtx import schedules as S
from tests.schedules.helpers import L
from tests.schedules.helpers import assert_close
from tests.schedules.helpers import check_torch
from tests.schedules.helpers import optax_values
from tests.schedules.helpers import ours
from tests.schedules.helpers import ours_plain
from tests.schedules.helpers import torch_lrs

TORCH_CASES = {
    "multistep": (
        S.piecewise_constant(0.4, {30: 0.3, 80: 0.3, 150: 0.3, 220: 0.3}),
        lambda o: L.MultiStepLR(o, [30, 80, 150, 220], gamma=0.3),
        0.4,
        300,
    ),
    "step": (
        S.exponential_decay(0.4, 25, 0.7, staircase=True),
        lambda o: L.StepLR(o, 25, gamma=0.7),
        0.4,
        300,
    ),
    "exponential": (
        S.exponential_decay(0.4, 1, 0.99),
        lambda o: L.ExponentialLR(o, 0.99),
        0.4,
        400,
    ),
    "polynomial_p2": (
        S.polynomial(0.4, 0.0, 2.0, 250),
        lambda o: L.PolynomialLR(o, total_iters=250, power=2.0),
        0.4,
        300,
    ),
    "polynomial_p05": (
        S.polynomial(0.4, 0.0, 0.5, 200),
        lambda o: L.PolynomialLR(o, total_iters=200, power=0.5),
        0.4,
        250,
    ),
    "linear": (
        S.linear(0.4 * 0.05, 0.4 * 0.9, 120),
        lambda o: L.LinearLR(o, start_factor=0.05, end_factor=0.9, total_iters=120),
        0.4,
        300,
    ),
    "constant_lr": (
        S.constant_warmup(0.4, 0.3, 40),
        lambda o: L.ConstantLR(o, factor=0.3, total_iters=40),
        0.4,
        300,
    ),
    # MultiplicativeLR with a constant factor is exponential decay, factor as data;
    # growth (factor > 1) needs a cap, here one it never reaches.
    "multiplicative": (
        S.exponential_decay(0.3, 1, 0.98),
        lambda o: L.MultiplicativeLR(o, lambda k: 0.98),
        0.3,
        300,
    ),
    "multiplicative_growth": (
        S.exponential_decay(1e-4, 1, 1.02, end_value=1.0),
        lambda o: L.MultiplicativeLR(o, lambda k: 1.02),
        1e-4,
        300,
    ),
    "inverse_time": (
        S.inverse_time_decay(0.3, 20.0, 0.75),
        lambda o: L.LambdaLR(o, lambda k: (1 + k / 20.0) ** -0.75),
        0.3,
        300,
    ),
    "inverse_sqrt": (
        S.inverse_sqrt_decay(0.3),
        lambda o: L.LambdaLR(o, lambda k: 1 / math.sqrt(k + 1)),
        0.3,
        300,
    ),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch(x64, case):
    check_torch(*TORCH_CASES[case])


def test_multiplicative_lr_with_a_general_lambda(x64):
    """torch MultiplicativeLR(lr_lambda) multiplies the lr by lr_lambda(k) at step k:
    any Python lambda becomes a plain callable looking up the running product."""
    lr_lambda = lambda k: 0.95 if k % 10 else 1.2  # noqa: E731
    n = 300
    table = jnp.asarray(0.3 * np.cumprod([1.0] + [lr_lambda(k) for k in range(1, n)]))
    schedule = lambda k: table[jnp.minimum(k, n - 1)]  # noqa: E731
    ref = torch_lrs(lambda o: L.MultiplicativeLR(o, lr_lambda), n, 0.3)
    assert_close(ours_plain(schedule, n), ref)
    # and it drives an optimizer (readable in state, not settable: it is code)
    opt = gradtx.sgd(schedule)
    params = {"w": jnp.zeros(2, jnp.float64)}
    state = opt.init(params)
    for _ in range(11):
        _, state = opt.update({"w": jnp.ones(2, jnp.float64)}, state, params)
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["learning_rate"], ref[11])


def test_lambda_lr_as_a_plain_callable(x64):
    """torch LambdaLR(lr_lambda) sets lr = η · lr_lambda(k): a plain callable does it."""
    ref = torch_lrs(lambda o: L.LambdaLR(o, lambda k: 0.5 + 0.5 * math.cos(k / 10)), 300, 0.3)
    # the count is int32: convert it, else int32 / 10 computes in float32
    assert_close(ours_plain(lambda k: 0.3 * (0.5 + 0.5 * jnp.cos(k.astype(float) / 10)), 300), ref)


def test_constant_warmup_with_factor_zero(x64):
    """torch's stepped ConstantLR divides by the factor at total_iters
    (ZeroDivisionError for 0); its closed form, and this schedule, do not."""
    np.testing.assert_array_equal(ours(S.constant_warmup(0.2, 0.0, 7), 20), [0.0] * 7 + [0.2] * 13)
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.2)
    sched = L.ConstantLR(opt, factor=0.0, total_iters=7)
    closed = []
    for k in range(20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates step(epoch)
            sched.step(k)
        closed.append(opt.param_groups[0]["lr"])
    np.testing.assert_array_equal(closed, [0.0] * 7 + [0.2] * 13)


def test_closed_forms(x64):
    k = np.arange(500.0)
    assert_close(ours(S.inverse_time_decay(0.5, 7.0), 500), 0.5 / (1 + k / 7.0))
    assert_close(ours(S.inverse_sqrt_decay(0.5), 500), 0.5 / np.sqrt(k + 1))
    assert_close(ours(S.constant(0.25), 50), np.full(50, 0.25))


@pytest.mark.parametrize("wide", [True, False], ids=["float64", "float32"])
def test_a_small_power_reaches_the_end_value_under_jit(wide):
    """Compiled with T a constant, XLA may write t/T as t·(1/T), an ulp off 1 at t = T;
    a power of 0.1 made that ulp 2.5% (float64) and 19% (float32) of init, held forever."""
    with jax.enable_x64(wide):
        for steps in range(1, 65):
            s = S.polynomial(0.43, 0.02, 0.1, steps)
            got = jax.jit(jax.vmap(s))(jnp.asarray([steps, steps + 1, 10 * steps]))
            np.testing.assert_array_equal(np.asarray(got), np.full(3, 0.02, got.dtype))


OPTAX_CASES = {
    "constant": (S.constant(0.3), lambda: optax.constant_schedule(0.3)),
    "piecewise": (
        S.piecewise_constant(0.3, {10: 0.5, 40: 2.0, 90: 0.1}),
        lambda: optax.piecewise_constant_schedule(0.3, {10: 0.5, 40: 2.0, 90: 0.1}),
    ),
    "exponential": (
        S.exponential_decay(0.3, 7, 0.8, transition_begin=20, end_value=0.01),
        lambda: optax.exponential_decay(0.3, 7, 0.8, transition_begin=20, end_value=0.01),
    ),
    "exponential_staircase_up": (
        S.exponential_decay(0.3, 9, 1.05, staircase=True, end_value=0.9),
        lambda: optax.exponential_decay(0.3, 9, 1.05, staircase=True, end_value=0.9),
    ),
    "polynomial": (
        S.polynomial(0.3, 0.02, 1.7, 150, 25),
        lambda: optax.polynomial_schedule(0.3, 0.02, 1.7, 150, 25),
    ),
    "linear": (
        S.linear(0.0, 0.3, 60, 10),
        lambda: optax.linear_schedule(0.0, 0.3, 60, 10),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax(x64, case):
    schedule, make = OPTAX_CASES[case]
    assert_close(ours(schedule, 300), optax_values(make(), 300))


BAD = [
    (lambda: S.exponential_decay(0.1, 0, 0.5), ValueError, r"transition_steps=0"),
    (lambda: S.exponential_decay(0.1, 5, -0.5), ValueError, r"decay_rate=-0\.5"),
    (lambda: S.piecewise_constant(0.1, {5: -1.0}), ValueError, r"boundaries_and_scales"),
    (lambda: S.piecewise_constant(0.1, {-5: 1.0}), ValueError, r"boundaries_and_scales"),
    (lambda: S.polynomial(0.1, 0.0, -1.0, 10), ValueError, r"polynomial\(power=-1\.0\)"),
    (lambda: S.linear(0.1, 0.0, 0), ValueError, r"linear\(transition_steps=0\)"),
    (lambda: S.inverse_time_decay(0.1, 0.0), ValueError, r"decay_steps=0\.0"),
    (lambda: S.inverse_sqrt_decay("a"), TypeError, r"inverse_sqrt_decay\(init_value='a'\)"),
    (lambda: S.constant(float("nan")), ValueError, r"constant\(value=nan\)"),
    # Growth without a cap reaches inf; from 0 it is NaN once decay_rate^k overflows.
    (
        lambda: S.exponential_decay(0.1, 1, 1.05),
        ValueError,
        r"exponential_decay\(decay_rate=1\.05\): decay_rate > 1 grows without bound",
    ),
    (
        lambda: S.exponential_decay(0.0, 1, 1.05, end_value=1.0),
        ValueError,
        r"exponential_decay\(init_value=0\.0, decay_rate=1\.05\): growing from init_value=0",
    ),
    (
        lambda: S.piecewise_constant(0.1, [(5, 0.5)]),
        TypeError,
        r"piecewise_constant\(boundaries_and_scales=\[\(5, 0\.5\)\]\): .* must be a mapping",
    ),
    # NumPy numbers are checked like Python numbers.
    (
        lambda: S.piecewise_constant(0.1, {np.int64(-5): 0.5}),
        ValueError,
        r"piecewise_constant\(boundaries_and_scales=-5\)",
    ),
    (
        lambda: S.exponential_decay(0.1, np.array(0), 0.5),
        ValueError,
        r"exponential_decay\(transition_steps=0\)",
    ),
    (lambda: S.polynomial(0.1, 0.0, 1.0, np.array(0)), ValueError, r"transition_steps=0\)"),
    (lambda: S.linear(0.1, 0.0, 10, np.array(-1)), ValueError, r"linear\(transition_begin=-1\)"),
    (
        lambda: S.constant_warmup(0.1, 1.5, 5),
        ValueError,
        r"^gradtx\.schedules\.constant_warmup\(factor=1\.5\): factor must be in \[0, 1\]$",
    ),
    (lambda: S.constant_warmup(0.1, 0.5, 0), ValueError, r"constant_warmup\(warmup_steps=0\)"),
    (lambda: S.constant_warmup(-0.1, 0.5, 5), ValueError, r"constant_warmup\(value=-0\.1\)"),
    (lambda: S.constant_warmup(0.1, 0.5, 2.5), TypeError, r"constant_warmup\(warmup_steps=2\.5\)"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()


@pytest.mark.parametrize(
    "make",
    [
        lambda r: S.exponential_decay(0.1, 1, r, end_value=None if r < 1 else 1.0),
        lambda r: S.cyclical(1e-3, 0.1, 20, mode="exp_range", gamma=min(r, 1.0)),
        # sgdr's period_mult of 1.00000001 ran as 1: restarts every 5 steps forever
        lambda r: S.sgdr(1.0, 5, period_mult=2 - r),
    ],
    ids=["exponential_decay", "cyclical", "sgdr"],
)
def test_a_rate_that_rounds_to_one_is_refused_without_x64(make):
    # 0.99999999 is 1.0 in float32: torch's ExponentialLR(0.99999999) decays to 0.905
    # of its start over 10^7 steps, a float32 schedule would never move.
    with pytest.raises(ValueError, match=r"rounds to 1\.0 in float32, the schedules' precision"):
        make(0.99999999)
    with jax.enable_x64(True):
        assert make(0.99999999) is not None
    make(0.9999999)  # far enough from 1 for float32


def test_a_rate_set_in_state_that_rounds_to_one_is_refused():
    opt = gradtx.sgd(S.exponential_decay(0.1, 1, 0.9))
    state = opt.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match="decay_rate"):
        gradtx.set_hyperparams(state, {"learning_rate.decay_rate": 0.99999999})


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda v: S.inverse_time_decay(1.0, v), "inverse_time_decay(decay_steps"),
        (lambda v: S.one_cycle(100, 1.0, div_factor=v), "one_cycle(div_factor"),
        (lambda v: S.one_cycle(100, 1.0, final_div_factor=v), "one_cycle(final_div_factor"),
    ],
)
@pytest.mark.parametrize("value", [1e-46, 1e-40], ids=["zero", "subnormal"])
def test_a_positive_field_that_float32_stores_as_zero_is_refused(make, field, value):
    """1e-46 is 0 in float32, and 1e-40 a subnormal that XLA on CPU flushes to 0: the
    schedules divided by it (inverse_time_decay NaN at step 0, one_cycle inf)."""
    how = r"(rounds to 0 stored in float32,|is a subnormal number in float32, .* to 0:)"
    match = rf"^gradtx\.schedules\.{re.escape(field)}=1e-4[06]\): \w+ {how} outside \(0, inf\)"
    with pytest.raises(ValueError, match=match):
        make(value)
    with jax.enable_x64(True):
        assert np.isfinite(float(make(value)(0)))  # float64 holds it


def test_polynomial_starts_at_init_before_its_ramp():
    """(init - end) · 1 + end cancelled for a power other than 1: polynomial(1e-8, 1, 2,
    100) was 0.0 at step 0 in float32, not 1e-8 (as optax's formula gives)."""
    for begin in (0, 5):
        schedule = S.polynomial(1e-8, 1.0, 2.0, 100, transition_begin=begin)
        for k in range(begin + 1):
            assert float(schedule(k)) == np.float32(1e-8)
    assert float(schedule(55)) == pytest.approx(0.75, rel=1e-6)


def test_polynomial_derivative_in_power_at_one(x64):
    # power == 1 takes the straight line (written from its smaller end), which does not
    # read the power: its derivative is carried by a zero-valued term, as optax's.
    def ours(power):
        return S.polynomial(1.0, 0.1, power, 100)(50)

    def theirs(power):
        return optax.polynomial_schedule(1.0, 0.1, power, 100)(jnp.asarray(50.0))

    for power in (1.0, 2.0):
        with jax.numpy_dtype_promotion("standard"):
            want = jax.grad(theirs)(power)
        np.testing.assert_allclose(jax.grad(ours)(power), want, rtol=1e-12)


def test_zero_length_array_fields_keep_their_values():
    # Python 0 is refused, and so is a known JAX array 0; a traced one (data: a vmapped
    # sweep's) gives the end of a line, the start of a cosine.
    with pytest.raises(ValueError, match=r"^gradtx.schedules.linear\(transition_steps=0 as an "
                       r"int32 array\): transition_steps must be in \(0, inf\)$"):  # fmt: skip
        S.linear(0.0, 1.0, jnp.asarray(0, jnp.int32))
    traced = jax.jit(lambda n, make: make(n)(5), static_argnums=1)
    assert float(traced(0, lambda n: S.linear(0.0, 1.0, n))) == 1.0
    assert float(traced(0, lambda n: S.linear(1.0, 0.0, n))) == 0.0
    assert float(traced(0, lambda n: S.cosine_decay(1.0, n, 0.1))) == 1.0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda v: S.constant(v), "constant(value"),
        (lambda v: S.linear(v, 0.0, 10), "linear(init_value"),
        (lambda v: S.polynomial(1.0, v, 2.0, 10), "polynomial(end_value"),
        (lambda v: S.inverse_time_decay(1.0, v, 0.5), "inverse_time_decay(decay_steps"),
    ],
)
@pytest.mark.parametrize("value", [1e39, 10**39, np.float64(1e39)])
def test_a_finite_field_that_overflows_float32_is_refused_without_x64(make, field, value):
    # 1e39 is inf in float32: linear(1e39, 0, 10) was nan at every step, constant inf.
    shown = "10{39}" if isinstance(value, int) else r"1e\+39"
    match = rf"^gradtx\.schedules\.{re.escape(field)}={shown}\): \w+ overflows to inf "
    with pytest.raises(
        ValueError, match=match + r"when stored in float32 \(at most 3\.40282e\+38\)$"
    ):
        make(value)
    with jax.enable_x64(True):
        assert float(make(value)(0)) >= 0.0  # float64 holds it
    assert float(S.constant(3e38)(0)) == np.float32(3e38)


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda v: S.constant(v), "constant(value"),
        (lambda v: S.cosine_decay(v, 100), "cosine_decay(init_value"),
        (lambda v: S.exponential_decay(1.0, 10, 0.5, end_value=v), "exponential_decay(end_value"),
    ],
)
@pytest.mark.parametrize("sign", [1, -1])
def test_an_int_beyond_floats_range_is_refused_by_name(make, shown, sign):
    # float(10**400) raises OverflowError, which named neither the call nor the field
    given = rf"^gradtx\.schedules\.{re.escape(shown)}=-?10{{400}}\): \w+ overflows to -?inf when"
    with pytest.raises(ValueError, match=given):
        make(sign * 10**400)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: S.cosine_decay(0.1, n),
        lambda n: S.exponential_decay(0.1, n, 0.5, staircase=True),
        lambda n: S.linear(0.1, 0.0, n),
        lambda n: S.piecewise_constant(0.1, {n: 0.5}),
    ],
    ids=["cosine_decay", "exponential_decay", "linear", "piecewise_constant"],
)
def test_a_whole_float_step_count_is_taken_as_torch_takes_it(make):
    # torch's CosineAnnealingLR(opt, 10.0), StepLR(opt, 10.0, ...): the int's values
    counts = jnp.arange(0, 14, dtype=jnp.int32)
    chex.assert_trees_all_equal(jax.vmap(make(10.0))(counts), jax.vmap(make(10))(counts))
    # a whole Fraction as the whole float (it was refused as not an int)
    chex.assert_trees_all_equal(jax.vmap(make(Fraction(20, 2)))(counts), jax.vmap(make(10))(counts))
    with pytest.raises(TypeError, match=r"=10\.5\): .* must be an int"):
        make(10.5)
    with pytest.raises(TypeError, match=r"=Fraction\(21, 2\)\): .* must be an int"):
        make(Fraction(21, 2))
    with pytest.raises(TypeError, match=r"=True\): .* must be an int"):  # not a Fraction
        make(True)


def test_staircase_takes_a_numpy_bool_as_every_flag_does():
    counts = jnp.arange(0, 7, dtype=jnp.int32)
    given = S.exponential_decay(1.0, 2, 0.5, staircase=np.bool_(True))
    chex.assert_trees_all_equal(
        jax.vmap(given)(counts), jax.vmap(S.exponential_decay(1.0, 2, 0.5, staircase=True))(counts)
    )
    with pytest.raises(TypeError, match=r"staircase=1\): staircase must be a bool"):
        S.exponential_decay(1.0, 2, 0.5, staircase=1)
