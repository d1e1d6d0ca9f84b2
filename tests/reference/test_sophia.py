"""Sophia against optax.contrib.sophia, step by step in float64.

Both sides minimise the same non-separable loss, each passing ``obj_fn=loss``
to the Hutchinson estimator, with the same PRNG key (so the same probes).
"""

import jax
import numpy as np
import optax.contrib
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax_on_loss
from tests.reference.harness import mixed_loss


def _on_loss(ours, theirs, seed, **kw):
    """This file's comparisons run on the non-separable ``mixed_loss``, with only the
    keywords each test names."""
    kw.setdefault("keywords", ())
    assert_matches_optax_on_loss(ours, theirs, seed, loss=mixed_loss(seed), **kw)


def _h(seed):
    rng = np.random.default_rng(1770 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.97)),
        b2=float(rng.uniform(0.5, 0.99)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
        gamma=float(rng.uniform(0.05, 1.0)),  # some coordinates clipped, some not
        clip=float(rng.uniform(0.5, 2.0)),
        interval=2 + seed,  # the estimate is refreshed on some steps only
    )


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_sophia_matches_optax(x64, clip, seed):
    h = _h(seed)
    mask = {"w": True, "b": False, "k": True}
    key = jax.random.PRNGKey(100 + seed)
    kw = dict(
        b1=h["b1"], b2=h["b2"], eps=h["eps"], weight_decay=h["wd"], gamma=h["gamma"],
        clip_threshold=h["clip"] if clip else None, update_interval=h["interval"],
    )  # fmt: skip
    ours = gradtx.sophia(
        h["lr"], weight_decay_mask=mask, **kw,
        hessian_diagonal_fn=gradtx.hutchinson_hessian_diagonal(key),
    )  # fmt: skip
    theirs = optax.contrib.sophia(
        h["lr"], weight_decay_mask=mask, **kw,
        hessian_diagonal_fn=optax.contrib.hutchinson_estimator_diag_hessian(key),
    )  # fmt: skip
    _on_loss(ours, theirs, seed, keywords=("obj_fn",))


@pytest.mark.parametrize("seed", [0, 1])
def test_sophia_defaults_match_optax(x64, seed):
    h = _h(seed)
    _on_loss(gradtx.sophia(h["lr"]), optax.contrib.sophia(h["lr"]), seed, keywords=("obj_fn",))


@pytest.mark.parametrize("seed", [0, 1])
def test_sophia_schedule_and_mask_fn_match_optax(x64, seed):
    h = _h(seed)
    lr = lambda t: h["lr"] * 0.9 ** t.astype(jax.numpy.float64)  # noqa: E731
    decayed = lambda p: {"w": False, "b": True, "k": True}  # noqa: E731
    _on_loss(
        gradtx.sophia(lr, gamma=h["gamma"], update_interval=2, weight_decay_mask_fn=decayed),
        optax.contrib.sophia(lr, gamma=h["gamma"], update_interval=2, weight_decay_mask=decayed),
        seed,
        keywords=("obj_fn",),
    )
