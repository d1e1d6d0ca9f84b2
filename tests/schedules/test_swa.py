"""swa_lr against torch.optim.swa_utils.SWALR itself (float64, >= 300 steps)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim.swa_utils import SWALR

from gradtx import schedules as S
from tests.schedules.helpers import L
from tests.schedules.helpers import assert_close
from tests.schedules.helpers import check_torch
from tests.schedules.helpers import ours
from tests.schedules.helpers import torch_lrs


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("anneal_steps", [1, 2, 10, 400])
def test_matches_torch(x64, anneal, anneal_steps):
    """torch recovers the start lr from the current one at every step (a recursion);
    the closed form gives the same numbers, also when annealing outlasts the run."""
    check_torch(
        S.swa_lr(0.4, 0.05, anneal_steps, anneal=anneal),
        lambda o: SWALR(o, swa_lr=0.05, anneal_epochs=anneal_steps, anneal_strategy=anneal),
        0.4,
        320,
    )


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_no_annealing(x64, anneal):
    """anneal_epochs=0: torch applies swa_lr from the first step."""
    ref = torch_lrs(lambda o: SWALR(o, swa_lr=0.05, anneal_epochs=0, anneal_strategy=anneal), 300)
    np.testing.assert_array_equal(ref, 0.05)
    np.testing.assert_array_equal(ours(S.swa_lr(1.0, 0.05, 0, anneal=anneal), 300), ref)


def test_swa_rising_to_a_larger_rate(x64):
    check_torch(
        S.swa_lr(0.01, 0.3, 25),
        lambda o: SWALR(o, swa_lr=0.3, anneal_epochs=25),
        0.01,
        300,
    )


def _torch_switch(swa_start, n, anneal_epochs, anneal="cos"):
    """torch's documented pattern: MultiplicativeLR (0.99) until swa_start, then
    SWALR (swa_lr 0.05), both created at the start; the lr of each of n steps."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.3)
    scheduler = L.MultiplicativeLR(opt, lambda k: 0.99)
    swa_scheduler = SWALR(opt, swa_lr=0.05, anneal_epochs=anneal_epochs, anneal_strategy=anneal)
    ref = []
    for i in range(n):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (swa_scheduler if i > swa_start else scheduler).step()
    return np.asarray(ref)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_switch_to_swa_mid_run_as_torch_documents(x64, anneal):
    """torch's SWALR example: another scheduler until swa_start, then SWALR, created
    at the start but first stepped after epoch swa_start + 1.  That is a join whose
    SWA member starts from the first schedule's value at B = swa_start + 1."""
    swa_start, n = 160, 400
    ref = _torch_switch(swa_start, n, 20, anneal)
    decay = S.exponential_decay(0.3, 1, 0.99)
    b = swa_start + 1
    lr = S.join([decay, S.swa_lr(float(decay(b)), 0.05, 20, anneal=anneal)], [b])
    assert_close(ours(lr, n), ref)
    np.testing.assert_allclose(ref[b + 20 :], 0.05, rtol=1e-15)


def test_switch_without_annealing_as_torch_runs_it(x64):
    """With anneal_epochs=0 torch's SWALR sets the lr to swa_lr when it is created,
    so the scheduler before it decays from swa_lr, and the switch is at B + 1."""
    swa_start, n = 160, 300
    ref = _torch_switch(swa_start, n, 0)
    b = swa_start + 1
    lr = S.join([S.exponential_decay(0.05, 1, 0.99), S.constant(0.05)], [b + 1])
    assert_close(ours(lr, n), ref)


BAD = [
    (lambda: S.swa_lr(0.1, 0.05, -1), ValueError, r"swa_lr\(anneal_steps=-1\): .* >= 0"),
    (lambda: S.swa_lr(0.1, 0.05, 2.5), TypeError, r"swa_lr\(anneal_steps=2\.5\)"),
    (lambda: S.swa_lr(0.1, -0.05), ValueError, r"swa_lr\(swa_value=-0\.05\)"),
    (lambda: S.swa_lr(float("nan"), 0.05), ValueError, r"swa_lr\(init_value=nan\)"),
    (lambda: S.swa_lr(0.1, 0.05, anneal="cosine"), ValueError, r"swa_lr\(anneal='cosine'\)"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_float32_anneal_keeps_its_relative_precision_near_a_small_end(anneal):
    """a and 1 − a each come from their own end (k and A − k, exact): swa a + init (1 − a)
    was 21% off torch's doubles at step 4,999 of a 5,000-step cosine anneal to 0."""
    A, k = 5000, np.arange(4_900, 5_000)
    x = k / A
    a = 0.5 * (1 - np.cos(np.pi * x)) if anneal == "cos" else x
    for init, swa in ((0.1, 0.0), (0.0, 0.1), (0.1, 1e-6)):
        want = swa * a + init * (1 - a)
        with jax.enable_x64(False):
            got = np.asarray(jax.vmap(S.swa_lr(init, swa, A, anneal=anneal))(jnp.asarray(k)))
        np.testing.assert_allclose(got, want, rtol=1e-6)
