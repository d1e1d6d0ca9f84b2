# %% [markdown]
# # gradtx 04: schedules
#
# Every schedule in `gradtx.schedules`, plotted; a momentum that cycles against
# the learning rate (one-cycle); schedules as *data* in the optimizer state
# (change the peak without recompiling, sweep peaks with `jax.vmap`); and
# `reduce_on_plateau`, the schedule driven by the loss.
#
# Runs on CPU in well under a minute.  Set `GRADTX_COLAB_FAST=1` for a shorter run.

# %% setup

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import gradtx
from gradtx import schedules as S

N = 200 if FAST else 1000  # steps plotted


def values(schedule, n=N):
    # A schedule is called with the 0-based int32 step count, also under jit/vmap.
    return np.asarray(jax.jit(jax.vmap(lambda k: schedule(k)))(jnp.arange(n, dtype=jnp.int32)))

# %% [markdown]
# ## Every schedule
#
# Each factory returns a callable NamedTuple of numbers (`S.sgdr(...)` is an `SGDR`
# with fields `peak_value`, `first_period`, `period_mult`, `min_value`).

# %%
q = N // 10
ALL = {
    "constant(0.1)": S.constant(0.1),
    "piecewise_constant": S.piecewise_constant(0.1, {3 * q: 0.3, 6 * q: 0.3, 8 * q: 0.3}),
    "exponential_decay": S.exponential_decay(0.1, q, 0.5),
    "exponential_decay(staircase)": S.exponential_decay(0.1, q, 0.5, staircase=True),
    "inverse_time_decay": S.inverse_time_decay(0.1, q / 4),
    "inverse_sqrt_decay": S.inverse_sqrt_decay(0.1),
    "polynomial(power=2)": S.polynomial(0.1, 0.001, 2.0, 8 * q),
    "linear (warmup)": S.linear(0.0, 0.1, 2 * q),
    "cosine_decay": S.cosine_decay(0.1, 8 * q, alpha=0.05),
    "warmup_cosine_decay": S.warmup_cosine_decay(0.0, 0.1, q, 9 * q, end_value=0.001),
    "sgdr(period_mult=1)": S.sgdr(0.1, 2 * q, min_value=0.001),
    "sgdr(period_mult=2)": S.sgdr(0.1, q // 2, period_mult=2, min_value=0.001),
    "cyclical(triangular)": S.cyclical(0.01, 0.1, q),
    "cyclical(triangular2)": S.cyclical(0.01, 0.1, q, mode="triangular2"),
    "cyclical(exp_range)": S.cyclical(0.01, 0.1, q, mode="exp_range", gamma=0.5 ** (1 / (3 * q))),
    "one_cycle(cos)": S.one_cycle(N, 0.1),
    "one_cycle(linear)": S.one_cycle(N, 0.1, anneal="linear"),
    "one_cycle(three_phase)": S.one_cycle(N, 0.1, three_phase=True),
    "join(linear, sgdr)": S.join([S.linear(0.0, 0.1, q), S.sgdr(0.1, 3 * q)], [q]),
}
fig, axes = plt.subplots(5, 4, figsize=(16, 15), sharex=True)
for ax, (name, schedule) in zip(axes.flat, ALL.items()):
    ax.plot(values(schedule))
    ax.set_title(name, fontsize=10)
for ax in list(axes.flat)[len(ALL):]:
    ax.axis("off")
fig.supxlabel("step")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Agreement with PyTorch
#
# Where PyTorch has the schedule, gradtx gives the same numbers (the test suite
# checks every one to 1e-9 in float64).  A quick look, when torch is installed:

# %%
try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=q // 2, T_mult=2, eta_min=0.001)
    ref = []
    for _ in range(N):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = values(S.sgdr(0.1, q // 2, period_mult=2, min_value=0.001))
    print("max |gradtx - torch| =", np.max(np.abs(ours - np.asarray(ref))))

# %% [markdown]
# ## One-cycle with inverse momentum cycling
#
# Any hyperparameter of a named optimizer can be a schedule.  `one_cycle_momentum`
# is PyTorch's `OneCycleLR(cycle_momentum=True)` momentum: it falls while the
# learning rate rises.

# %%
opt = gradtx.sgd(S.one_cycle(N, 0.1), momentum=S.one_cycle_momentum(N, 0.85, 0.95))
params = {"w": jnp.ones(3)}
state = opt.init(params)
step = jax.jit(opt.update)
lr, mom = [], []
for _ in range(N):
    hp = gradtx.get_hyperparams(state)  # the values the next update applies
    lr.append(float(hp["learning_rate"]))
    mom.append(float(hp["momentum"]))
    _, state = step({"w": jnp.ones(3)}, state, params)
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(lr, label="learning rate")
ax2 = ax.twinx()
ax2.plot(mom, color="C1", label="momentum")
ax.set_xlabel("step")
fig.legend(loc="upper right")
plt.show()

# %% [markdown]
# ## Schedules are data
#
# The schedule's numbers live in the optimizer state: `set_hyperparams` changes the
# peak of a one-cycle schedule in the middle of training without recompiling the
# jitted step, and `jax.vmap` over states trains several peaks at once.

# %%
traces = []


def loss_fn(p):
    return jnp.sum((p["w"] - 3.0) ** 2 * jnp.arange(1.0, 4.0))


opt = gradtx.adam(S.warmup_cosine_decay(0.0, 0.1, N // 10, N))


@jax.jit
def train_step(params, state):
    traces.append(1)  # Python side effect: runs once per trace
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return gradtx.apply_updates(params, updates), state, loss


params = {"w": jnp.zeros(3)}
state = opt.init(params)
for k in range(N):
    if k == N // 2:
        state = gradtx.set_hyperparams(state, {"learning_rate.peak_value": 0.3})
    params, state, loss = train_step(params, state)
print("traces:", len(traces), " final loss:", float(loss))


def train(state):
    def body(carry, _):
        params, state = carry
        params, state, loss = train_step.__wrapped__(params, state)
        return (params, state), loss

    return jax.lax.scan(body, ({"w": jnp.zeros(3)}, state), None, length=N)[1]


peaks = jnp.asarray([0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
base = opt.init({"w": jnp.zeros(3)})
states = jax.vmap(lambda v: gradtx.set_hyperparams(base, {"learning_rate.peak_value": v}))(peaks)
losses = jax.jit(jax.vmap(train))(states)  # one compiled program for all peaks
fig, ax = plt.subplots(figsize=(8, 3))
for peak, curve in zip(peaks.tolist(), np.asarray(losses)):
    ax.semilogy(curve, label=f"peak {peak:g}")
ax.set_xlabel("step")
ax.set_ylabel("loss")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Reduce on plateau
#
# `reduce_on_plateau` is a transform: give it the loss with `update(..., value=loss)`.
# It follows PyTorch's `ReduceLROnPlateau`, and its current scale is in its state.

# %%
rng = np.random.default_rng(0)
k = np.arange(N)
noisy_loss = 0.5 + np.exp(-k / (N / 10)) + rng.normal(0, 0.01, N)

tx = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(factor=0.5, patience=N // 40, cooldown=N // 80))
params = {"w": jnp.ones(2)}
state = tx.init(params)
update = jax.jit(tx.update)
scales = []
for v in noisy_loss:
    _, state = update({"w": jnp.ones(2)}, state, params, value=v)
    scales.append(float(state[1].inner_state.scale))
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(noisy_loss, label="loss")
ax.set_xlabel("step")
ax2 = ax.twinx()
ax2.semilogy(scales, color="C1", label="scale")
fig.legend(loc="upper right")
plt.show()
