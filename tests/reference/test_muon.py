"""Muon against torch.optim.Muon and optax.contrib.muon, step by step in float64.

torch runs Newton-Schulz in bfloat16 whatever the params' dtype; these tests
remove that cast (``torch.Tensor.bfloat16`` returns a float64 copy), so
torch's own code runs its arithmetic in float64 (tests/transforms/
test_orthogonalize.py compares the bfloat16 iteration too).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_optax_retuned
from tests.reference.harness import assert_matches_torch
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch

MATRICES = {"w": (3, 4), "v": (5, 2)}  # wide and tall
MIXED = {"w": (3, 4), "v": (5, 2), "b": (5,), "s": (), "k": (2, 3, 2)}


@pytest.fixture
def torch_in_float64(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


def _h(seed):
    rng = np.random.default_rng(700 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        wd=float(rng.uniform(1e-3, 0.2)),
        momentum=float(rng.uniform(0.7, 0.98)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        ns_steps=int(rng.integers(2, 8)),
        ns=tuple(float(c) for c in np.array([3.4445, -4.7750, 2.0315]) * rng.uniform(0.9, 1.1, 3)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps_root=float(rng.uniform(0, 1e-6)),
        adam_wd=float(rng.uniform(1e-3, 0.1)),
        adam_lr=float(rng.uniform(1e-3, 0.05)),
        rms=float(rng.uniform(0.1, 0.4)),
    )


@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_muon_matches_torch(x64, torch_in_float64, adjust_lr_fn, nesterov, seed):
    h = _h(seed)
    kwargs = dict(
        weight_decay=h["wd"], momentum=h["momentum"], nesterov=nesterov,
        ns_coefficients=h["ns"], eps=h["eps"], ns_steps=h["ns_steps"], adjust_lr_fn=adjust_lr_fn,
    )  # fmt: skip
    assert_matches_torch(
        gradtx.muon(h["lr"], **kwargs),
        lambda ps: torch.optim.Muon(ps, lr=h["lr"], **kwargs),
        seed,
        shapes=MATRICES,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_muon_torch_defaults(x64, torch_in_float64, seed):
    assert_matches_torch(gradtx.muon(), torch.optim.Muon, seed, shapes=MATRICES)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_under_one_cycle_with_cycled_momentum_matches_torch(x64, torch_in_float64, nesterov):
    """torch's OneCycleLR cycles Muon's momentum (cycle_momentum=True by default): a
    momentum schedule, as SGD's momentum and Adam's b1 take."""
    total = 12
    opt = gradtx.muon(
        gradtx.schedules.one_cycle(total, 0.02),
        momentum=gradtx.schedules.one_cycle_momentum(total),
        nesterov=nesterov,
    )

    def make(ps):
        torch_opt = torch.optim.Muon(ps, lr=0.02, nesterov=nesterov)
        torch_opt.scheduler = torch.optim.lr_scheduler.OneCycleLR(torch_opt, 0.02, total)
        return torch_opt

    params, grads = make_problem(0, total, shapes=MATRICES)
    ref = run_torch(make, params, grads, after_step=lambda o, i: o.scheduler.step())
    assert_trajectories_close(run_gradtx(opt, params, grads), ref)


class _Both:
    """torch's documented pairing: Muon for the matrices, AdamW for the other params."""

    def __init__(self, params, h):
        self.opts = [
            torch.optim.Muon([p for p in params if p.ndim == 2], lr=h["lr"], weight_decay=h["wd"]),
            torch.optim.AdamW([p for p in params if p.ndim != 2], lr=h["adam_lr"]),
        ]

    def step(self):
        for opt in self.opts:
            opt.step()


@pytest.mark.parametrize("seed", [0, 1])
def test_partition_pairing_matches_torch_muon_with_adamw(x64, torch_in_float64, seed):
    h = _h(seed)
    opt = gradtx.partition(
        {"muon": gradtx.muon(h["lr"], h["wd"]), "adamw": gradtx.adamw(h["adam_lr"])},
        labels_fn=lambda p: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adamw", p),
    )
    assert_matches_torch(opt, lambda ps: _Both(ps, h), seed, shapes=MIXED)


def test_torch_rule_rejects_other_leaves_naming_them():
    opt = gradtx.muon()
    with pytest.raises(ValueError) as info:
        opt.init({"w": jnp.ones((3, 2)), "b": jnp.ones(2)})
    msg = str(info.value)
    assert msg.startswith("gradtx.muon: gradtx.orthogonalize acts on matrices, but the leaf ['b']")
    assert "gradtx.partition({'muon': gradtx.muon(...), 'adamw': gradtx.adamw(...)}" in msg
    assert "convention='optax'" in msg
    with pytest.raises(ValueError, match=r"adam_b1 configures the AdamW"):
        gradtx.muon(adam_b1=0.8)
    with pytest.raises(ValueError, match=r"give one of them"):
        gradtx.muon(adjust_lr_fn="original", consistent_rms=0.2)
    with pytest.raises(ValueError, match=r"beta is optax's name for momentum"):
        gradtx.muon(momentum=0.9, beta=0.8)


def _optax_pair(h, nesterov, variant):
    """(gradtx.muon, optax.contrib.muon) with the same arguments under optax's names."""
    common = dict(learning_rate=h["lr"], eps=h["eps"], nesterov=nesterov)
    if variant == "defaults":  # optax's defaults where gradtx keeps torch's
        return (
            gradtx.muon(weight_decay=0.0, eps=1e-8, convention="optax", learning_rate=h["lr"],
                        nesterov=nesterov),
            optax.contrib.muon(h["lr"], nesterov=nesterov),
        )  # fmt: skip
    mask = {"w": True, "v": False, "b": True, "s": True, "k": True}
    theirs = dict(
        common, beta=h["momentum"], weight_decay=h["wd"], weight_decay_mask=mask,
        adam_b1=h["b1"], adam_b2=h["b2"], adam_eps_root=h["eps_root"],
        adam_weight_decay=h["adam_wd"], adam_learning_rate=h["adam_lr"],
    )  # fmt: skip
    ours = {k: v for k, v in theirs.items() if k != "weight_decay_mask"} | dict(mask=mask)
    if variant == "rms-adaptive-table":
        table = ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037))
        extra = dict(consistent_rms=h["rms"], adaptive=True, ns_coeffs=table, ns_steps=3)
        ours, theirs = dict(ours, **extra), dict(theirs, **extra)
    else:
        ours["ns_coefficients"] = theirs["ns_coeffs"] = h["ns"]
        ours["ns_steps"] = theirs["ns_steps"] = h["ns_steps"]
    return gradtx.muon(convention="optax", **ours), optax.contrib.muon(**theirs)


@pytest.mark.parametrize("variant", ["defaults", "adam-args", "rms-adaptive-table"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_muon_matches_optax(x64, variant, nesterov, seed):
    ours, theirs = _optax_pair(_h(seed), nesterov, variant)
    assert_matches_optax(ours, theirs, seed, shapes=MIXED)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_optax_rule_follows_new_decay_rates_as_inject_hyperparams_does(x64, nesterov):
    h = _h(2)
    ours = gradtx.muon(h["lr"], weight_decay=0.0, eps=1e-8, nesterov=nesterov, convention="optax")
    theirs = optax.inject_hyperparams(optax.contrib.muon)(h["lr"], nesterov=nesterov)
    changes = {7: {"momentum": ("beta", 0.5), "adam_b1": ("adam_b1", 0.7)}}
    assert_matches_optax_retuned(ours, theirs, 2, changes, shapes=MIXED)


def test_match_rms_adamw_is_optax_consistent_rms(x64):
    params, grads = make_problem(4, 25, MIXED)
    ours = gradtx.muon(0.02, adjust_lr_fn="match_rms_adamw", convention="optax")
    theirs = optax.contrib.muon(0.02, weight_decay=0.1, eps=1e-7, consistent_rms=0.2)
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_iteration_like_torch(x64, seed):
    # torch's real bfloat16 iteration and ns_dtype=bfloat16: the same bfloat16 numbers,
    # up to the order of float32 sums (a bfloat16 ulp, 2^-8, on a rare entry, times lr).
    h = _h(seed)
    params, grads = make_problem(seed, 25, MATRICES)
    ours = run_gradtx(gradtx.muon(h["lr"], ns_dtype=jnp.bfloat16), params, grads)
    ref = run_torch(lambda ps: torch.optim.Muon(ps, lr=h["lr"]), params, grads)
    assert_trajectories_close(ours, ref, rtol=0, atol=2**-8 * h["lr"])


def test_hyperparameters_in_state():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    names = sorted(gradtx.get_hyperparams(gradtx.muon().init({"w": params["w"]})))
    assert names == ["eps", "learning_rate", "momentum", "ns_coefficients", "weight_decay"]
    h = gradtx.get_hyperparams(gradtx.muon(beta=0.9, convention="optax").init(params))
    assert sorted(h) == [
        "adam_b1", "adam_b2", "adam_eps_root", "eps", "learning_rate", "momentum",
        "ns_coefficients", "weight_decay",
    ]  # fmt: skip
    assert float(h["momentum"]) == pytest.approx(0.9)
    h = gradtx.get_hyperparams(gradtx.muon(adjust_lr_fn="match_rms_adamw").init(params["w"]))
    assert float(h["consistent_rms"]) == pytest.approx(0.2)


def test_optaxs_ns_coeffs_spelling_refuses_a_number():
    # The alias compared a number with its default triple: NumPy's "truth value of an
    # array ... is ambiguous".
    with pytest.raises(
        TypeError, match=r"^gradtx.muon\(ns_coeffs=3.5\): ns_coeffs must be a triple"
    ):
        gradtx.muon(ns_coeffs=3.5)


def test_ns_coefficients_as_a_numpy_array_are_optaxs_triple(x64):
    # optax takes a NumPy triple; it was refused as "must be a real scalar"
    params = jnp.ones((3, 2))
    given = np.array((3.0, -3.2, 1.2))
    for make in (lambda c: gradtx.muon(ns_coeffs=c), lambda c: gradtx.muon(ns_coefficients=c)):
        a, b = make(given), make(tuple(given.tolist()))
        np.testing.assert_array_equal(a.update(params, a.init(params), params)[0],
                                      b.update(params, b.init(params), params)[0])  # fmt: skip
