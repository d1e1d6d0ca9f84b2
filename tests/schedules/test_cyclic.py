"""cyclical, one_cycle and one_cycle_momentum against torch and Smith's formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import schedules as S
from tests.schedules.helpers import L
from tests.schedules.helpers import assert_close
from tests.schedules.helpers import check_torch
from tests.schedules.helpers import ours

TORCH_CASES = {}

for mode in ("triangular", "triangular2", "exp_range"):
    gamma = 0.995 if mode == "exp_range" else 1.0
    for down in (None, 30):
        TORCH_CASES[f"cyclic_{mode}_{down}"] = (
            S.cyclical(0.01, 0.2, 20, mode=mode, gamma=gamma, step_size_down=down),
            lambda o, mode=mode, gamma=gamma, down=down: L.CyclicLR(
                o,
                0.01,
                0.2,
                20,
                step_size_down=down,
                mode=mode,
                gamma=gamma,
                cycle_momentum=False,
            ),
            0.01,
            400,
        )

for anneal in ("cos", "linear"):
    for three in (False, True):
        for total, pct in ((300, 0.3), (257, 0.25)):
            TORCH_CASES[f"one_cycle_{anneal}_{three}_{total}"] = (
                S.one_cycle(
                    total,
                    0.2,
                    pct_start=pct,
                    div_factor=20.0,
                    final_div_factor=1e3,
                    anneal=anneal,
                    three_phase=three,
                ),
                lambda o, anneal=anneal, three=three, total=total, pct=pct: L.OneCycleLR(
                    o,
                    0.2,
                    total_steps=total,
                    pct_start=pct,
                    anneal_strategy=anneal,
                    three_phase=three,
                    div_factor=20.0,
                    final_div_factor=1e3,
                    cycle_momentum=False,
                ),
                0.2,
                total,
            )


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch(x64, case):
    check_torch(*TORCH_CASES[case])


def test_cyclical_closed_forms(x64):
    """Smith's symmetric formula for the three modes."""
    k = np.arange(500.0)
    s, base, high = 15, 0.1, 1.0
    cycle = np.floor(1 + k / (2 * s))
    x = np.abs(k / s - 2 * cycle + 1)
    tri = base + (high - base) * np.maximum(0, 1 - x)
    assert_close(ours(S.cyclical(base, high, s), 500), tri)
    tri2 = base + (high - base) * np.maximum(0, 1 - x) / 2 ** (cycle - 1)
    assert_close(ours(S.cyclical(base, high, s, mode="triangular2"), 500), tri2)
    exp = base + (high - base) * np.maximum(0, 1 - x) * 0.99**k
    assert_close(ours(S.cyclical(base, high, s, mode="exp_range", gamma=0.99), 500), exp)


def test_numpy_and_traced_arguments(x64):
    """NumPy numbers build the same schedule as Python numbers; JAX arrays, even
    traced ones, are data (unchecked) and give the same values too."""
    reference = ours(S.cyclical(0.01, 0.2, 20, step_size_down=30), 200)
    numpy_built = S.cyclical(np.float64(0.01), np.array(0.2), np.int64(20), step_size_down=30)
    assert type(numpy_built.step_size) is int and type(numpy_built.max_value) is float
    assert_close(ours(numpy_built, 200), reference)

    @jax.jit
    def traced(step_size):
        schedule = S.cyclical(0.01, 0.2, step_size, step_size_down=30)
        return jax.vmap(schedule)(jnp.arange(200, dtype=jnp.int32))

    assert_close(np.asarray(traced(jnp.asarray(20))), reference)


def test_float32_default(x64):
    """Without x64 the values are float32 and still follow the formula."""
    with jax.enable_x64(False):
        schedule = S.one_cycle(100, 0.1)
        v = jax.jit(lambda k: schedule(k))(jnp.asarray(29, jnp.int32))
        assert v.dtype == jnp.float32
    np.testing.assert_allclose(float(v), 0.1, rtol=1e-6)


@pytest.mark.parametrize(("up", "down"), [(3, 3), (5, 2), (500, 500)])
def test_float32_keeps_its_digits_late_in_the_run(up, down):
    """The position in the cycle is reduced before dividing: 1 + t/total - cycle lost the
    fraction's low bits (3e-4 of the amplitude at 20k steps, so from_torch_state_dict
    refused a correctly placed CyclicLR run)."""
    counts = np.arange(1_000_000 - 3000, 1_000_000, 7)
    total = up + down
    x = (counts % total) / total
    want = np.where(x <= up / total, x / (up / total), (1 - x) / (1 - up / total))
    with jax.enable_x64(False):
        schedule = S.cyclical(0.0, 1.0, up, step_size_down=down)
        got = np.asarray(jax.vmap(schedule)(jnp.asarray(counts, jnp.int32)))
    np.testing.assert_allclose(got, want, atol=4e-7)


def test_float32_falling_half_keeps_its_relative_precision_near_the_base():
    """The falling ramp is (total − into)/down from the exact integer remainder; from the
    rounded position (x − 1)/(ratio − 1) was 1.7e-4 off at the low end of a long half."""
    up, down = 2000, 8000
    counts = np.concatenate([np.arange(9_900, 10_000), np.arange(19_990, 20_000)])
    into = counts % (up + down)
    want = np.where(into <= up, into / up, (up + down - into) / down)
    with jax.enable_x64(False):
        got = np.asarray(jax.vmap(S.cyclical(0.0, 1.0, up, step_size_down=down))(counts))
    np.testing.assert_allclose(got, want, rtol=1e-6)


BAD = [
    (lambda: S.cyclical(0.0, 1.0, 0), ValueError, r"cyclical\(step_size=0\)"),
    (lambda: S.cyclical(0.0, 1.0, 5, mode="tri"), ValueError, r"cyclical\(mode='tri'\)"),
    (lambda: S.cyclical(0.0, 1.0, 5, gamma=0.9), ValueError, r"cyclical\(gamma=0\.9\)"),
    (lambda: S.one_cycle(100, 0.1, anneal="cosine"), ValueError, r"one_cycle\(anneal="),
    (lambda: S.one_cycle(100, 0.1, pct_start=1.0), ValueError, r"one_cycle\(pct_start=1\.0\)"),
    (lambda: S.one_cycle(3, 0.1, pct_start=0.3), ValueError, r"one_cycle\(total_steps=3"),
    (lambda: S.one_cycle(10, 0.1, three_phase=1), TypeError, r"three_phase=1"),
    (lambda: S.one_cycle(10.5, 0.1), TypeError, r"one_cycle\(total_steps=10\.5\)"),
    (lambda: S.one_cycle(10, -0.1), ValueError, r"one_cycle\(peak_value=-0\.1\)"),
    # exp_range with gamma > 1 grows to inf, then NaN (inf · 0 at the cycle starts).
    (
        lambda: S.cyclical(0.0, 1.0, 5, mode="exp_range", gamma=1.01),
        ValueError,
        r"cyclical\(gamma=1\.01\): gamma must be in \(0, 1\]",
    ),
    # NumPy numbers are checked like Python numbers (np.array(0) gave NaN).
    (lambda: S.cyclical(0.0, 1.0, np.array(0)), ValueError, r"cyclical\(step_size=0\): "),
    (lambda: S.cyclical(0.0, 1.0, np.int64(0)), ValueError, r"cyclical\(step_size=0\): "),
    (
        lambda: S.cyclical(0.0, 1.0, 5, step_size_down=np.array(0)),
        ValueError,
        r"cyclical\(step_size_down=0\)",
    ),
    (lambda: S.one_cycle(np.int64(3), 0.1), ValueError, r"one_cycle\(total_steps=3, pct"),
    (lambda: S.one_cycle(np.array(3), 0.1), ValueError, r"one_cycle\(total_steps=3, pct"),
    (lambda: S.one_cycle(np.array(10.5), 0.1), TypeError, r"one_cycle\(total_steps=10\.5\)"),
    (
        lambda: S.one_cycle(10, 0.1, pct_start=np.float32(0.05)),
        ValueError,
        r"one_cycle\(total_steps=10, pct_start=0\.05.*a phase would be empty",
    ),
    (
        lambda: S.one_cycle_momentum(np.int32(3)),
        ValueError,
        r"one_cycle_momentum\(total_steps=3, pct",
    ),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()


@pytest.mark.parametrize("make", [S.one_cycle, lambda t, v, **kw: S.one_cycle_momentum(t, **kw)])
@pytest.mark.parametrize(
    "kw", [dict(pct_start=0.99999999), dict(pct_start=0.50499999, three_phase=True)]
)
def test_a_pct_start_whose_float32_phase_is_empty_is_refused(make, kw):
    # In double each phase has a step, but with pct_start stored in float32 the last
    # step fell in the previous phase (the peak at step T - 1, where torch is at its end).
    with pytest.raises(ValueError, match=r"empty once pct_start is stored in float32"):
        make(100, 0.1, **kw)
    with jax.enable_x64(True):
        make(100, 0.1, **kw)
