"""Adamax and AdamaxW against torch.optim.Adamax and optax, step by step in float64."""

import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_torch


def _h(seed):
    rng = np.random.default_rng(300 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_adamax_matches_torch(x64, l2, maximize, seed):
    h = _h(seed)
    wd = h["wd"] if l2 else 0.0
    assert_matches_torch(
        gradtx.adamax(h["lr"], h["b1"], h["b2"], h["eps"], weight_decay=wd, maximize=maximize),
        lambda ps: torch.optim.Adamax(
            ps, lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], weight_decay=wd,
            maximize=maximize,
        ),
        seed,
    )  # fmt: skip


@pytest.mark.parametrize("convention", ["torch", "optax"])
@pytest.mark.parametrize("seed", [0, 1])
def test_adamax_matches_optax(x64, convention, seed):
    h = _h(seed)
    assert_matches_optax(
        gradtx.adamax(h["lr"], h["b1"], h["b2"], h["eps"], convention=convention),
        optax.adamax(h["lr"], h["b1"], h["b2"], h["eps"]),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_adamaxw_matches_optax(x64, seed):
    h = _h(seed)
    mask = {"w": True, "b": False, "k": True}
    assert_matches_optax(
        gradtx.adamaxw(h["lr"], h["b1"], h["b2"], h["eps"], h["wd"], mask=mask),
        optax.adamaxw(h["lr"], h["b1"], h["b2"], h["eps"], h["wd"], mask=mask),
        seed,
    )
    assert_matches_optax(gradtx.adamaxw(h["lr"]), optax.adamaxw(h["lr"]), seed)  # optax defaults
