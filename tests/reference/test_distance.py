"""DoG and DoWG against optax.contrib, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax

MASK = {"w": True, "b": False, "k": True}


def _h(seed):
    rng = np.random.default_rng(1700 + seed)
    return dict(
        lr=float(rng.uniform(0.3, 1.5)),
        init=float(rng.uniform(1e-4, 1e-2)),
        eps=float(rng.uniform(1e-9, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
        sq_dist=float(rng.uniform(1e-3, 0.5)),
    )


def _schedule(t):
    # The same plain callable on both sides (optax's own schedules round to float32).
    return 1.0 / (1.0 + 0.05 * t.astype(jnp.float64))


@pytest.mark.parametrize("tag", ["heuristic", "distance", "learning_rate"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dog_matches_optax(x64, tag, seed):
    h = _h(seed)
    init_step = (tag, h["init"])
    assert_matches_optax(
        gradtx.dog(h["lr"], init_step, h["eps"], h["wd"], MASK),
        optax.contrib.dog(h["lr"], init_step, h["eps"], h["wd"], MASK),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_dog_schedule_and_defaults_match_optax(x64, seed):
    assert_matches_optax(gradtx.dog(_schedule), optax.contrib.dog(_schedule), seed)
    assert_matches_optax(gradtx.dog(), optax.contrib.dog(), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_dowg_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(
        gradtx.dowg(h["lr"], h["sq_dist"], h["eps"], h["wd"], MASK),
        optax.contrib.dowg(h["lr"], h["sq_dist"], h["eps"], h["wd"], MASK),
        seed,
    )
    assert_matches_optax(  # r̄²_0 from eps, a schedule
        gradtx.dowg(_schedule, eps=h["eps"]), optax.contrib.dowg(_schedule, eps=h["eps"]), seed
    )
    assert_matches_optax(gradtx.dowg(), optax.contrib.dowg(), seed)


def test_dog_init_reads_the_params_and_keeps_them(x64):
    params = {"w": jnp.asarray([3.0, 4.0])}
    state = gradtx.dog(init_step=("heuristic", 0.5)).init(params)
    inner = state.inner_state[0]
    np.testing.assert_allclose(inner.max_distance, 0.5 * (1 + 5.0))
    np.testing.assert_array_equal(inner.initial_params["w"], params["w"])
    assert inner.initial_params["w"] is not params["w"]  # a copy: donation-safe


@pytest.mark.parametrize(
    "bad, exc",
    [
        (("heuristic",), TypeError),
        ("heuristic", TypeError),
        (("heuristics", 1e-6), ValueError),
        (("distance", -1.0), ValueError),
        (("distance", "1"), TypeError),
        (("distance", float("nan")), ValueError),
    ],
)
def test_dog_init_step_is_checked(bad, exc):
    with pytest.raises(exc, match=r"^gradtx\.dog\(init_step(\[\d\])?="):
        gradtx.dog(init_step=bad)
