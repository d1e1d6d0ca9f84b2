"""torch schedulers stepped once per epoch against gradtx schedules of the step count.

A torch loop that calls ``scheduler.step()`` after each epoch of ``n`` updates runs
update k (from 0) at the epoch schedule's value at ``k // n``: a plain callable
``lambda k: s(k // n)`` for any schedule, or, as data, a staircase whose steps are
``n`` times longer (docs/porting_from_pytorch.md, "A scheduler stepped once per
epoch").  And a run continues across ``from_torch_state_dict`` mid-epoch.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx
from gradtx import schedules as S

N, EPOCHS, LR = 3, 12, 0.1
LRS = torch.optim.lr_scheduler

TORCH = {
    "step": lambda opt: LRS.StepLR(opt, step_size=4, gamma=0.5),
    "multistep": lambda opt: LRS.MultiStepLR(opt, milestones=[3, 7, 8], gamma=0.3),
    "exponential": lambda opt: LRS.ExponentialLR(opt, gamma=0.8),
    "cosine": lambda opt: LRS.CosineAnnealingLR(opt, T_max=10, eta_min=1e-3),
}
EPOCH_SCHEDULES = {  # the same rule with the count in epochs
    "step": S.exponential_decay(LR, 4, 0.5, staircase=True),
    "multistep": S.piecewise_constant(LR, {3: 0.3, 7: 0.3, 8: 0.3}),
    "exponential": S.exponential_decay(LR, 1, 0.8),
    "cosine": S.cosine_decay(LR, 10, alpha=1e-3 / LR, past_end="cycle"),
}
AS_DATA = {  # the staircases with steps N times longer, settable in the state
    "step": S.exponential_decay(LR, 4 * N, 0.5, staircase=True),
    "multistep": S.piecewise_constant(LR, {3 * N: 0.3, 7 * N: 0.3, 8 * N: 0.3}),
    "exponential": S.exponential_decay(LR, N, 0.8, staircase=True),
}


def _torch_lrs(name):
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=LR)
    sched = TORCH[name](opt)
    lrs = []
    for _ in range(EPOCHS):
        for _ in range(N):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("name", sorted(TORCH))
def test_an_epoch_schedule_read_at_k_over_n_is_torchs_per_epoch_scheduler(x64, name):
    want = _torch_lrs(name)
    per_epoch = EPOCH_SCHEDULES[name]
    got = [float(per_epoch(jnp.asarray(k) // N)) for k in range(len(want))]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if name in AS_DATA:
        data = [float(AS_DATA[name](jnp.asarray(k))) for k in range(len(want))]
        np.testing.assert_allclose(data, want, rtol=1e-12)


@pytest.mark.parametrize("cut", [7, 8, 9])  # mid-epoch, the epoch's last update, a new epoch
def test_a_per_epoch_run_continues_from_torchs_state_dict_mid_epoch(x64, cut):
    rng = np.random.default_rng(cut)
    grads = rng.normal(size=(EPOCHS * N, 4))
    w0 = rng.normal(size=4)
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=LR, momentum=0.9)
    sched = TORCH["cosine"](opt)
    want, saved = [], None
    for k, g in enumerate(grads):
        w.grad = torch.tensor(g)
        opt.step()
        if (k + 1) % N == 0:
            sched.step()
        want.append(w.detach().numpy().copy())
        if k + 1 == cut:
            saved = copy.deepcopy(opt.state_dict())  # its tensors are the live buffers
    per_step = gradtx.sgd(S.cosine_decay(LR, 10 * N, alpha=1e-3 / LR), momentum=0.9)
    if cut % N:  # mid-epoch a per-step port's rate is not torch's: refused
        with pytest.raises(ValueError, match="stepped once per epoch"):
            gradtx.from_torch_state_dict(per_step, jnp.asarray(want[cut - 1]), saved, step=cut)
    else:  # at an epoch's start the two rates agree, and torch's current rate is all it reads
        gradtx.from_torch_state_dict(per_step, jnp.asarray(want[cut - 1]), saved, step=cut)
    epoch_schedule = EPOCH_SCHEDULES["cosine"]
    ours = gradtx.sgd(lambda k: epoch_schedule(k // N), momentum=0.9)
    params = jnp.asarray(want[cut - 1])
    state = gradtx.from_torch_state_dict(ours, params, saved, step=cut)
    update = jax.jit(ours.update)
    for k in range(cut, len(grads)):
        u, state = update(jnp.asarray(grads[k]), state, params)
        params = gradtx.apply_updates(params, u)
        np.testing.assert_allclose(np.asarray(params), want[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_a_scheduler_stepped_before_the_first_update_is_the_schedule_read_one_ahead(x64, name):
    grads = np.random.default_rng(0).normal(size=(20, 3))
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=LR, momentum=0.9)
    sched = TORCH[name](opt)
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        sched.step()  # the habit: torch warns, then every update runs a step ahead
    schedule = EPOCH_SCHEDULES[name]  # here stepped per update
    tx = gradtx.sgd(lambda k: schedule(k + 1), momentum=0.9)
    params = jnp.zeros(3)
    state = tx.init(params)
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
        sched.step()
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = params + updates
        np.testing.assert_allclose(params, w.detach().numpy(), rtol=1e-12, atol=1e-15)
