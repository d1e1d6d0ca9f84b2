"""join against optax's join_schedules; join of plain callables."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import schedules as S
from gradtx._base import is_schedule
from tests.schedules.helpers import assert_close, optax_values, ours, ours_plain


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


def test_join_of_plain_callables_is_plain(x64):
    j = S.join([lambda k: 0.1 * jnp.ones([]), S.constant(0.2)], [5])
    assert not is_schedule(j)
    np.testing.assert_allclose(ours_plain(j, 8), [0.1] * 5 + [0.2] * 3)


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
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()
