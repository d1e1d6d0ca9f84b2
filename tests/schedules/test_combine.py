"""join against optax's join_schedules, product against torch's ChainedScheduler,
and both of plain callables."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import schedules as S
from gradtx._base import is_schedule
from tests.schedules.helpers import (
    L,
    assert_close,
    check_torch,
    optax_values,
    ours,
    ours_plain,
    torch_lrs,
)


def test_matches_optax(x64):
    ours_join = S.join(
        [S.linear(0.0, 0.3, 20), S.cosine_decay(0.3, 100), S.constant(0.01)], [20, 120]
    )
    theirs = optax.join_schedules(
        [
            optax.linear_schedule(0.0, 0.3, 20),
            optax.cosine_decay_schedule(0.3, 100),
            optax.constant_schedule(0.01),
        ],
        [20, 120],
    )
    assert_close(ours(ours_join, 300), optax_values(theirs, 300))


def test_join_matches_sequential_lr(x64):
    """SequentialLR restarts each member at its milestone: join's members see count - boundary."""
    eta = 0.3
    check_torch(
        S.join(
            [
                S.linear(eta * 0.1, eta, 10),
                S.exponential_decay(eta, 1, 0.98),
                S.exponential_decay(eta, 25, 0.5, staircase=True),
            ],
            [10, 110],
        ),
        lambda o: L.SequentialLR(
            o, [L.LinearLR(o, 0.1, 1.0, 10), L.ExponentialLR(o, 0.98), L.StepLR(o, 25, 0.5)],
            milestones=[10, 110],
        ),
        eta,
        300,
    )  # fmt: skip


def test_join_with_a_member_that_continues_the_rate(x64):
    """torch's MultiplicativeLR has no closed form: after a milestone it continues from the
    rate before it, so its gradtx member starts at torch's rate at the milestone."""
    eta, milestone = 0.4, 10
    at_milestone = eta * 0.9 ** (milestone - 1) * 0.99
    check_torch(
        S.join(
            [S.exponential_decay(eta, 1, 0.9), S.exponential_decay(at_milestone, 1, 0.99)],
            [milestone],
        ),
        lambda o: L.SequentialLR(
            o, [L.ExponentialLR(o, 0.9), L.MultiplicativeLR(o, lambda epoch: 0.99)],
            milestones=[milestone],
        ),
        eta,
        300,
    )  # fmt: skip


def test_join_of_a_sequential_lr_member_one_step_ahead(x64):
    """A SequentialLR member of a SequentialLR: torch's constructor steps the inner
    schedulers once more (its ``last_epoch -= 1`` reaches the member, not the member's
    schedulers), so the first member runs one step ahead of ``join``'s: the recipe of
    docs/porting_from_pytorch.md gives it ``k + 1``."""
    eta = 0.1
    inner = S.join([S.constant_warmup(eta, 0.5, 3), S.exponential_decay(eta, 1, 0.9)], [3])

    def make(o):
        first = L.SequentialLR(
            o, [L.ConstantLR(o, factor=0.5, total_iters=3), L.ExponentialLR(o, 0.9)], [3]
        )
        return L.SequentialLR(o, [first, L.StepLR(o, 5, 0.5)], milestones=[8])

    ref = torch_lrs(make, 300, eta)
    second = S.exponential_decay(eta, 5, 0.5, staircase=True)
    assert_close(ours_plain(S.join([lambda k: inner(k + 1), second], [8]), 300), ref)
    assert np.max(np.abs(ours(S.join([inner, second], [8]), 300) - ref)) > 1e-3  # without it


def test_join_of_plain_callables_is_plain(x64):
    j = S.join([lambda k: 0.1 * jnp.ones([]), S.constant(0.2)], [5])
    assert not is_schedule(j)
    np.testing.assert_allclose(ours_plain(j, 8), [0.1] * 5 + [0.2] * 3)


# ChainedScheduler of members whose step multiplies the lr: the product of their
# values, the learning rate in one member and factors (init 1) in the others.
CHAINED = {
    "constant_exponential": (
        S.product([S.constant_warmup(0.05, 0.1, 20), S.exponential_decay(1.0, 1, 0.99)]),
        lambda o: L.ChainedScheduler([L.ConstantLR(o, 0.1, 20), L.ExponentialLR(o, 0.99)]),
        0.05,
        300,
    ),
    "linear_multistep_cosine_polynomial": (
        S.product(
            [
                S.linear(0.005, 0.05, 50),
                S.piecewise_constant(1.0, {100: 0.5, 200: 0.5}),
                S.cosine_decay(1.0, 300),
                S.polynomial(1.0, 0.0, 0.5, 250),
            ]
        ),
        lambda o: L.ChainedScheduler(
            [
                L.LinearLR(o, 0.1, 1.0, 50),
                L.MultiStepLR(o, [100, 200], 0.5),
                L.CosineAnnealingLR(o, T_max=300),
                L.PolynomialLR(o, total_iters=250, power=0.5),
            ]
        ),
        0.05,
        301,
    ),
    "step_multiplicative": (
        S.product(
            [S.exponential_decay(0.2, 30, 0.5, staircase=True), S.exponential_decay(1.0, 1, 0.995)]
        ),
        lambda o: L.ChainedScheduler(
            [L.StepLR(o, 30, 0.5), L.MultiplicativeLR(o, lambda k: 0.995)]
        ),
        0.2,
        320,
    ),
}


@pytest.mark.parametrize("case", sorted(CHAINED))
def test_product_matches_chained_scheduler(x64, case):
    check_torch(*CHAINED[case])


def test_product_of_plain_callables_is_plain(x64):
    p = S.product([lambda k: 0.5 * jnp.ones([], jnp.float64), S.linear(0.0, 1.0, 4)])
    assert not is_schedule(p)
    np.testing.assert_allclose(ours_plain(p, 6), [0.0, 0.125, 0.25, 0.375, 0.5, 0.5])


BAD = [
    (lambda: S.join([S.constant(1.0)], [3]), ValueError, r"join\(boundaries=\[3\]\)"),
    (lambda: S.join([S.constant(1.0)] * 3, [5, 3]), ValueError, r"non-decreasing"),
    (
        lambda: S.join([S.constant(1.0)] * 2, 5),
        TypeError,
        r"join\(boundaries=5\): boundaries must be a list of steps, one per schedule after "
        r"the first \(1 here\).*e\.g\. boundaries=\[5\]$",
    ),
    (lambda: S.join(S.constant(1.0), []), TypeError, r"join\(schedules=Constant\(.*a list"),
    (lambda: S.join([S.constant(1.0)] * 2, [np.array(-1)]), ValueError, r"boundaries=-1\)"),
    (lambda: S.product([]), ValueError, r"product\(schedules=\(\)\): need at least one"),
    (lambda: S.product(S.constant(1.0)), TypeError, r"product\(schedules=Constant\(.*a list"),
    (lambda: S.product([S.constant(1.0), 0.5]), TypeError, r"product\(schedules=\.\.\.\): 0\.5 is"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()
