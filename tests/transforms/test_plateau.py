"""reduce_on_plateau against torch.optim.lr_scheduler.ReduceLROnPlateau."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch


def metrics(seed, n=150, mode="min"):
    """A noisy loss that plateaus (at 0.5, then lower after a drop at step 90)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    loss = 0.5 + np.exp(-k / 15) - 0.2 * (k >= 90) + rng.normal(0, 0.01, n)
    return loss if mode == "min" else 1.0 - loss


def torch_scales(values, **kw):
    """torch's lr after each scheduler.step(value), from base lr 1."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, eps=0.0, **kw)
    out = []
    for v in values:
        opt.step()
        sched.step(float(v))
        out.append(opt.param_groups[0]["lr"])
    return np.asarray(out)


def gradtx_scales(tx, values):
    """The factor applied to an all-ones update at each step, jitted."""
    ones = {"w": jnp.ones(2, jnp.float64)}
    state = tx.init(ones)
    update = jax.jit(lambda s, v: tx.update(ones, s, ones, value=v))
    out = []
    for v in values:
        u, state = update(state, jnp.asarray(v, jnp.float64))
        np.testing.assert_array_equal(u["w"][0], u["w"][1])
        out.append(float(u["w"][0]))
    return np.asarray(out)


CASES = {
    "default": dict(),
    "rel_cooldown": dict(factor=0.5, patience=3, threshold=1e-2, cooldown=4),
    "abs": dict(factor=0.3, patience=2, threshold=5e-3, threshold_mode="abs"),
    "abs_cooldown": dict(factor=0.5, patience=1, threshold=2e-3, threshold_mode="abs", cooldown=2),
    "max_rel": dict(mode="max", factor=0.5, patience=4, threshold=1e-2),
    "max_abs": dict(
        mode="max", factor=0.7, patience=2, threshold=1e-3, threshold_mode="abs", cooldown=1
    ),
    "min_scale": dict(factor=0.5, patience=1, threshold=1e-2, min_scale=0.04),
    "patience0": dict(factor=0.8, patience=0, threshold=0.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_scales_match_torch(x64, case, seed):
    kw = dict(CASES[case])
    values = metrics(seed, mode=kw.get("mode", "min"))
    torch_kw = {("min_lr" if k == "min_scale" else k): v for k, v in kw.items()}
    ref = torch_scales(values, **torch_kw)
    ours = gradtx_scales(gradtx.reduce_on_plateau(**kw), values)
    np.testing.assert_allclose(ours, ref, rtol=1e-15)
    assert len(np.unique(ref)) >= 3, "the sequence must exercise several reductions"
    if "min_scale" in kw:
        assert ref[-1] == kw["min_scale"]


def test_in_chain_matches_torch_trajectory(x64):
    """chain(sgd, reduce_on_plateau) given the loss at the current params equals
    torch stepping the scheduler with that loss before each optimizer step."""
    params, grads = make_problem(0, steps=40)
    values = metrics(2, n=40)
    kw = dict(factor=0.5, patience=2, threshold=1e-2, cooldown=1)
    holder = {}

    def make(ps):
        opt = torch.optim.SGD(ps, lr=0.1, momentum=0.9)
        holder["s"] = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, eps=0.0, **kw)
        holder["s"].step(float(values[0]))
        return opt

    def after(opt, i):
        if i + 1 < len(values):
            holder["s"].step(float(values[i + 1]))

    ref = run_torch(make, params, grads, after)
    tx = gradtx.chain(gradtx.sgd(0.1, momentum=0.9), gradtx.reduce_on_plateau(**kw))
    ours = run_gradtx(tx, params, grads, extra=lambda i: {"value": values[i]})
    assert_trajectories_close(ours, ref)


def test_hyperparams_are_data(x64):
    tx = gradtx.reduce_on_plateau(factor=0.5, patience=3)
    ones = {"w": jnp.ones(2, jnp.float64)}
    traces = []

    @jax.jit
    def step(state, v):
        traces.append(1)
        return tx.update(ones, state, ones, value=v)

    state = tx.init(ones)
    hp = gradtx.get_hyperparams(state)
    assert {"factor", "patience", "cooldown", "threshold", "min_scale"} <= set(hp)
    state = gradtx.set_hyperparams(state, patience=0, factor=0.25)
    for v in (1.0, 2.0, 3.0):
        u, state = step(state, jnp.asarray(v, jnp.float64))
    # best 1.0; two bad steps with patience 0 -> two reductions by 0.25.
    assert float(u["w"][0]) == 0.0625
    assert len(traces) == 1


def test_float32_value_and_updates():
    tx = gradtx.reduce_on_plateau(patience=0)
    p = {"w": jnp.ones(3, jnp.bfloat16)}
    state = tx.init(p)
    for v in (1.0, 1.0):
        u, state = tx.update(p, state, p, value=jnp.asarray(v, jnp.float32))
    assert u["w"].dtype == jnp.bfloat16
    assert float(u["w"][0]) == pytest.approx(0.1, rel=1e-2)


def test_errors():
    tx = gradtx.reduce_on_plateau()
    p = {"w": jnp.ones(2)}
    state = tx.init(p)
    with pytest.raises(ValueError, match=r"reduce_on_plateau\.update: value must be the scalar"):
        tx.update(p, state, p, value=jnp.ones(2))
    for bad in ("x", 1j, None.__class__):
        with pytest.raises(TypeError, match=r"reduce_on_plateau\.update: value must be the scalar"):
            tx.update(p, state, p, value=bad)
    with pytest.raises(TypeError, match=r"the metric goes in value= \(got loss=\)"):
        tx.update(p, state, p, loss=1.0)  # was ignored: no report, no reduction
    with pytest.raises(ValueError, match=r"reduce_on_plateau\(factor=1\.0\)"):
        gradtx.reduce_on_plateau(factor=1.0)
    with pytest.raises(ValueError, match=r"mode='best'"):
        gradtx.reduce_on_plateau(mode="best")
    with pytest.raises(ValueError, match=r"threshold_mode='x'"):
        gradtx.reduce_on_plateau(threshold_mode="x")
    with pytest.raises(TypeError, match=r"patience=2\.5"):
        gradtx.reduce_on_plateau(patience=2.5)
    with pytest.raises(ValueError, match=r"cooldown=-1"):
        gradtx.reduce_on_plateau(cooldown=-1)


def test_one_metric_per_epoch_with_many_updates_per_epoch_like_torch(x64):
    # torch's habit: optimizer.step() for every batch, scheduler.step(val_loss) once
    # per epoch.  Here: value= on the first update after the metric is known; the
    # other updates apply the current scale without counting towards patience.
    import torch

    steps_per_epoch, epochs = 8, 5
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, eps=0.0)
    torch_lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            torch_lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.ones(2, dtype=torch.float64)
            opt.step()
        sched.step(1.0)  # a constant validation loss at the end of the epoch
    per_epoch = torch_lrs[::steps_per_epoch]
    assert per_epoch == [0.1, 0.1, 0.1, 0.1, 0.05]

    tx = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(factor=0.5, patience=2))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    ours, val_loss = [], None
    for _ in range(epochs):
        for step in range(steps_per_epoch):
            extra = {"value": val_loss} if step == 0 and val_loss is not None else {}
            u, state = tx.update({"w": jnp.ones(2)}, state, params, **extra)
            ours.append(-float(u["w"][0]))
        val_loss = 1.0  # evaluated at the end of the epoch
    np.testing.assert_allclose(ours, torch_lrs, rtol=1e-12)  # every update's rate
    # the rate in effect, in one line
    state = tx.update({"w": jnp.ones(2)}, state, params, value=val_loss)[1]
    sched.step(1.0)
    lr_in_effect = 0.1 * float(gradtx.get_hyperparams(state)["scale"])
    assert lr_in_effect == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


# How each rule that reads the rate inside follows torch's ReduceLROnPlateau (the
# porting table's recipe): "report", set_hyperparams(learning_rate=base * scale) right
# after each report; "next update", one update later (ASGD computes its eta at the end
# of a step, from the rate of that step); "never", not at all (Rprop reads lr only at
# its first step, to fill the step sizes).
_RATE_INSIDE = [
    ("adafactor", 0.5, {}, {}, "report"),
    ("asgd", 0.05, {"lambd": 0.1, "t0": 0}, {"lambd": 0.1, "t0": 0}, "next update"),
    ("rprop", 0.05, {}, {}, "never"),
]


@pytest.mark.parametrize(("name", "base", "torch_kw", "kw", "when"), _RATE_INSIDE)
def test_a_rule_that_uses_the_rate_inside_follows_the_scale_through_set_hyperparams(
    x64, torch64, name, base, torch_kw, kw, when
):
    """Adafactor's step is min(lr, 1/sqrt(t)) times the RMS of the params, ASGD's eta
    and Rprop's step sizes are their own: none is proportional to lr, so scaling their
    updates is not torch's lowered lr.  The plateau's own state, and set_hyperparams
    at the time the porting table gives, is."""
    steps_per_epoch, epochs = 3, 6
    params, grads = make_problem(3, steps_per_epoch * epochs)
    val_losses = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75]
    torch_class = {"adafactor": torch.optim.Adafactor, "asgd": torch.optim.ASGD,
                   "rprop": torch.optim.Rprop}[name]  # fmt: skip
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch_class(list(tensors.values()), lr=base, **torch_kw)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, eps=0.0)
    ref = []
    for epoch in range(epochs):
        for g in grads[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]:
            for k, t in tensors.items():
                t.grad = torch.tensor(g[k])
            opt.step()
            ref.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
        sched.step(val_losses[epoch])
    assert opt.param_groups[0]["lr"] == base * 0.125  # three reductions

    tx, plateau = getattr(gradtx, name)(base, **kw), gradtx.reduce_on_plateau(0.5, patience=0)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state, watch, ours, pending = tx.init(p), plateau.init({}), [], None
    update = jax.jit(tx.update)
    for epoch in range(epochs):
        for g in grads[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]:
            u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
            p = gradtx.apply_updates(p, u)
            ours.append({k: np.asarray(v) for k, v in p.items()})
            if pending is not None:
                state, pending = gradtx.set_hyperparams(state, learning_rate=pending), None
        _, watch = plateau.update({}, watch, value=val_losses[epoch])
        rate = base * gradtx.get_hyperparams(watch)["scale"]
        if when == "report":
            state = gradtx.set_hyperparams(state, learning_rate=rate)
        elif when == "next update":
            pending = rate
    assert float(gradtx.get_hyperparams(watch)["scale"]) == 0.125
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_follows_the_scale_through_set_hyperparams_at_each_report(x64, line_search_fn):
    """torch's LBFGS reads lr at each step (its first step is min(1, 1/|g|_1)·lr, then
    lr): set_hyperparams at the report, as for Adafactor."""
    base, val_losses = 0.5, [1.0, 0.8, 0.85, 0.9, 0.7, 0.75]
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 3)), (rng.uniform(size=20) < 0.5).astype(np.float64)
    start = {"w": rng.normal(size=3) * 0.1, "b": np.array(0.3)}

    def loss(p, xp):
        z = xp.matmul(x if xp is jnp else torch.tensor(x), p["w"]) + p["b"]
        t = y if xp is jnp else torch.tensor(y)
        return xp.mean(xp.log(1 + xp.exp(-z)) + (1 - t) * z) + 0.01 * xp.sum(p["w"] ** 2)

    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    kw = dict(max_iter=3, history_size=3, line_search_fn=line_search_fn)
    opt = torch.optim.LBFGS(list(tensors.values()), lr=base, **kw)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, eps=0.0)

    def closure():
        opt.zero_grad()
        value = loss(tensors, torch)
        value.backward()
        return value

    tx, plateau = gradtx.lbfgs(base, **kw), gradtx.reduce_on_plateau(0.5, patience=0)
    p = {k: jnp.asarray(v) for k, v in start.items()}
    state, watch = tx.init(p), plateau.init({})
    value_fn = lambda q: loss(q, jnp)  # noqa: E731
    for epoch in range(6):
        for _ in range(2):
            opt.step(closure)
            value, g = jax.value_and_grad(value_fn)(p)
            u, state = tx.update(g, state, p, value=value, value_fn=value_fn)
            p = gradtx.apply_updates(p, u)
            for k, t in tensors.items():
                np.testing.assert_allclose(p[k], t.detach().numpy(), rtol=1e-10, atol=1e-12)
        sched.step(val_losses[epoch])
        _, watch = plateau.update({}, watch, value=val_losses[epoch])
        state = gradtx.set_hyperparams(
            state, learning_rate=base * gradtx.get_hyperparams(watch)["scale"]
        )
    assert opt.param_groups[0]["lr"] == base * 0.125


def _near_the_boundary(rng, mode, threshold_mode, threshold, sign):
    """float32 metrics within a few ulps of torch's boundary for the best so far."""
    values = [float(np.float32(sign * rng.uniform(1, 100)))]
    for _ in range(6):
        best = min(values) if mode == "min" else max(values)
        step = best * threshold if threshold_mode == "rel" else threshold
        edge = best - step if mode == "min" else best + step
        values.append(float(np.float32(edge + rng.normal() * abs(edge) * 3e-7)))
    return values


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(("threshold_mode", "threshold"), [("rel", 1e-4), ("abs", 1e-3)])
@pytest.mark.parametrize("sign", [1, -1])
def test_float32_decisions_near_the_threshold_are_torchs(mode, threshold_mode, threshold, sign):
    """torch compares float32 metrics in doubles; best·(1 − t) rounded to float32 moved
    the boundary by an ulp of best, and 17 of 120 such runs decided otherwise.  (Where
    best − value is not exact, torch's form decides, as before.)"""
    kw = dict(mode=mode, factor=0.5, patience=0, threshold=threshold, threshold_mode=threshold_mode)
    tx = gradtx.reduce_on_plateau(**kw)
    ones = {"w": jnp.ones(1)}
    update = jax.jit(lambda s, v: tx.update(ones, s, ones, value=v))
    rng = np.random.default_rng(0)
    for _ in range(40):
        values = _near_the_boundary(rng, mode, threshold_mode, threshold, sign)
        state, got = tx.init(ones), []
        for v in values:
            u, state = update(state, jnp.float32(v))
            got.append(float(u["w"][0]))
        np.testing.assert_array_equal(got, torch_scales(values, **kw))
