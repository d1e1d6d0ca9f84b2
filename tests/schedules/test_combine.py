"""join against optax's join_schedules, product against torch's ChainedScheduler,
and both of plain callables."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import schedules as S
from gradtx._base import is_schedule
from tests.schedules.helpers import L
from tests.schedules.helpers import assert_close
from tests.schedules.helpers import check_torch
from tests.schedules.helpers import optax_values
from tests.schedules.helpers import ours
from tests.schedules.helpers import ours_plain
from tests.schedules.helpers import torch_lrs


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


ETA = 0.1
# A SequentialLR's first member whose values torch keeps when the SequentialLR is itself
# the first member of another: (torch's, gradtx's).
INNER_FIRST = {
    "LinearLR": (lambda o: L.LinearLR(o, 0.1, 1.0, 5), S.linear(ETA * 0.1, ETA, 5)),
    "StepLR": (lambda o: L.StepLR(o, 2, 0.5), S.exponential_decay(ETA, 2, 0.5, staircase=True)),
    "MultiStepLR": (
        lambda o: L.MultiStepLR(o, [1, 3], 0.5),
        S.piecewise_constant(ETA, {1: 0.5, 3: 0.5}),
    ),
    "ConstantLR": (lambda o: L.ConstantLR(o, 0.5, 3), S.constant_warmup(ETA, 0.5, 3)),
}


def _nested_sequential_lr(first):
    """SequentialLR([SequentialLR([first, ExponentialLR, StepLR], [5, 9]), StepLR], [14])."""

    def make(o):
        inner = L.SequentialLR(o, [first(o), L.ExponentialLR(o, 0.9), L.StepLR(o, 3, 0.7)], [5, 9])
        return L.SequentialLR(o, [inner, L.StepLR(o, 4, 0.5)], milestones=[14])

    return torch_lrs(make, 40, ETA)


def _nested_join(first):
    """The recipe of docs/porting_from_pytorch.md: the inner milestones, each minus 1."""
    rest = [S.exponential_decay(ETA, 1, 0.9), S.exponential_decay(ETA, 3, 0.7, staircase=True)]
    inner = S.join([first, *rest], [5 - 1, 9 - 1])
    return S.join([inner, S.exponential_decay(ETA, 4, 0.5, staircase=True)], [14])


@pytest.mark.parametrize("name", sorted(INNER_FIRST))
def test_join_of_a_sequential_lr_member(x64, name):
    """A SequentialLR first member of a SequentialLR: the outer constructor steps it once
    more, which advances its count (its milestones arrive one step early) but not its
    members'.  A LinearLR, StepLR, MultiStepLR or ConstantLR first member of it keeps
    torch's values: ``join`` with each inner milestone minus 1 matches torch."""
    torch_first, ours_first = INNER_FIRST[name]
    ref = _nested_sequential_lr(torch_first)
    assert_close(ours(_nested_join(ours_first), 40), ref)
    # The early milestones matter: join with the milestones as written differs.
    rest = [S.exponential_decay(ETA, 1, 0.9), S.exponential_decay(ETA, 3, 0.7, staircase=True)]
    as_written = S.join(
        [S.join([ours_first, *rest], [5, 9]), S.exponential_decay(ETA, 4, 0.5, staircase=True)],
        [14],
    )
    assert np.max(np.abs(ours(as_written, 40) - ref) / ref) > 1e-3


def test_join_of_a_sequential_lr_member_with_an_exponential_lr_first(x64):
    """The same nesting with an ExponentialLR inner first member: its values run one step
    ahead as well, so it also takes ``k + 1``."""
    exp = S.exponential_decay(ETA, 1, 0.8)
    ref = _nested_sequential_lr(lambda o: L.ExponentialLR(o, 0.8))
    assert_close(ours_plain(_nested_join(lambda k: exp(k + 1)), 40), ref)
    assert np.max(np.abs(ours(_nested_join(exp), 40) - ref) / ref) > 1e-3  # without the shift


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
