"""polyak_sgd against optax.polyak_sgd, step by step in float64.

Both sides minimise the same loss: each step takes ``value, grads =
jax.value_and_grad(loss)(params)`` at its own params and passes ``value``.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax_on_loss
from tests.reference.harness import make_problem
from tests.reference.harness import mixed_loss


def _on_loss(ours, theirs, seed, **kw):
    """This file's comparisons run on the non-separable ``mixed_loss``, with only the
    keywords each test names."""
    kw.setdefault("keywords", ())
    assert_matches_optax_on_loss(ours, theirs, seed, loss=mixed_loss(seed), **kw)


def _h(seed):
    rng = np.random.default_rng(1750 + seed)
    return dict(
        max_lr=float(rng.uniform(0.01, 0.2)),
        scaling=float(rng.uniform(0.3, 1.5)),
        eps=float(rng.uniform(0.0, 1.0)),
    )


def _loss_at_start(seed):
    params, _ = make_problem(seed, 1, MIXED_SHAPES)
    return float(mixed_loss(seed)({k: jnp.asarray(v) for k, v in params.items()}))


@pytest.mark.parametrize("variant", ["sps", "sps+"])
@pytest.mark.parametrize("seed", [0, 1])
def test_polyak_sgd_matches_optax(x64, variant, seed):
    h = _h(seed)
    # f_min a little under the starting loss: the gap turns negative within the run,
    # where sps steps backwards and sps+ stops.
    f_min = 0.8 * _loss_at_start(seed)
    args = (h["max_lr"], h["scaling"], f_min, h["eps"], variant)
    _on_loss(gradtx.polyak_sgd(*args), optax.polyak_sgd(*args), seed, keywords=("value",))


@pytest.mark.parametrize("seed", [0, 1])
def test_polyak_sgd_defaults_and_scaling_schedule_match_optax(x64, seed):
    h = _h(seed)
    _on_loss(gradtx.polyak_sgd(), optax.polyak_sgd(), seed, keywords=("value",))
    scaling = lambda t: h["scaling"] / (1.0 + 0.2 * t.astype(jnp.float64))  # noqa: E731
    _on_loss(
        gradtx.polyak_sgd(h["max_lr"], scaling),
        optax.polyak_sgd(h["max_lr"], scaling),
        seed,
        keywords=("value",),
    )
