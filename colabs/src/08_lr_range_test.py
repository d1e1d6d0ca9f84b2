# %% [markdown]
# # Finding learning rates with the range test
#
# Cyclical learning rates and the one-cycle policy need two numbers: a base and a maximum
# learning rate. Smith ("Cyclical Learning Rates for Training Neural Networks", WACV 2017)
# finds them with a **learning-rate range test**: train briefly while the learning rate grows
# from tiny to huge, and watch the loss. Where it starts to fall, where it falls fastest and
# where it stops falling and blows up tell you which rates work.
#
# In gradtx the learning rate is data in the optimizer state, so `gradtx.lr_range_test` sets
# it with `set_hyperparams` inside one jitted `lax.while_loop`: the training step is compiled
# once, and the loop stops as soon as the loss has diverged. With `vmap_params=True` it runs
# several initial weights at once and draws a band instead of one noisy curve.
#
# This notebook runs the test on a Flax NNX model, then trains with `one_cycle` built from the
# bounds it found, against the untuned default learning rate. One small problem and one seed:
# the comparison at the end is computed from the runs, not written in advance.

# %% setup

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from sklearn.datasets import load_digits

import gradtx

EPOCHS = 2 if FAST else 40
RANGE_STEPS = 40 if FAST else 100
SEEDS = 2 if FAST else 4  # initial weights for the range test's band
BATCH = 32
SEED = 0

# %% [markdown]
# ## Data and model
# scikit-learn's 8x8 digits (1797 images, bundled), a fixed 60/40 split, and an MLP in Flax NNX.

# %%
x, y = load_digits(return_X_y=True)
order = np.random.default_rng(SEED).permutation(len(x))
x, y = x[order].astype(np.float32) / 16.0, y[order].astype(np.int32)
n_train = int(0.6 * len(x))
x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(64, 256, rngs=rngs)
        self.l2 = nnx.Linear(256, 256, rngs=rngs)
        self.l3 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        return self.l3(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


def loss_and_accuracy(model, x, y):
    logits = model(x)
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

# %% [markdown]
# ## The range test on the Flax model
# `nnx.split` turns the model into a graph definition and a pytree of parameters; the test's
# `loss_fn(params, batch)` merges them back. The batches are stacked on a leading step axis.
# Initial weights from `SEEDS` seeds are stacked too, and `vmap_params=True` tests them all in
# one program.

# %%
graphdef, _ = nnx.split(MLP(nnx.Rngs(SEED)), nnx.Param)


def loss_fn(params, batch):
    return loss_and_accuracy(nnx.merge(graphdef, params), *batch)[0]


rng = np.random.default_rng(SEED + 1)
idx = np.stack([rng.choice(n_train, BATCH, replace=False) for _ in range(RANGE_STEPS)])
batches = (jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))
inits = [nnx.split(MLP(nnx.Rngs(SEED + s)), nnx.Param)[1] for s in range(SEEDS)]
stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *inits)

OPTIMIZERS = {  # built once with any learning rate: the test drives it through the state
    "SGD momentum 0.9": lambda lr: gradtx.sgd(lr, momentum=0.9),
    "Adam": lambda lr: gradtx.adam(lr),
}
tests = {}
for name, make in OPTIMIZERS.items():
    start = time.perf_counter()
    tests[name] = gradtx.lr_range_test(make(1e-3), loss_fn, stacked, batches,
                                       num_steps=RANGE_STEPS, vmap_params=True)
    print(f"{name:17s} {tests[name]} ({time.perf_counter() - start:.1f}s, compile included)")

fig, axes = plt.subplots(1, len(tests), figsize=(6.4 * len(tests), 4.2))
for ax, (name, result) in zip(axes, tests.items()):
    result.plot(ax=ax, title=name)
fig.tight_layout()
plt.show()

# %% [markdown]
# How to read it: the grey lines are the raw losses of each run, the blue band the smoothed
# losses of all runs and the line their median. The red dot is where the median falls
# fastest (`suggested_lr`); the green span is `bounds`, from where the loss has made 10% of
# its descent to where it has made 90%: Smith's base and maximum learning rate, kept below
# the minimum, which sits at the edge of divergence.

# %% [markdown]
# ## Train: one cycle from the bounds vs the untuned default
# For each optimizer, two runs from the same initial weights on the same batches:
#
# * **default**: a constant learning rate, the one a newcomer reaches for without tuning:
#   Adam's 1e-3 (the paper's and PyTorch's default) and SGD's 0.01 (Keras' default);
# * **one cycle**: `result.one_cycle(total_steps)`, which rises from `base_lr` to `max_lr`
#   over the first 30% of training and anneals far below `base_lr` by the end.

# %%
DEFAULT_LR = {"SGD momentum 0.9": 0.01, "Adam": 1e-3}
steps_per_epoch = n_train // BATCH
total_steps = EPOCHS * steps_per_epoch


@nnx.jit
def train_step(model, optimizer, x, y):
    grads = nnx.grad(lambda m: loss_and_accuracy(m, x, y)[0])(model)
    optimizer.update(model, grads)


@nnx.jit
def evaluate(model):
    return jnp.stack(loss_and_accuracy(model, x_train, y_train) + loss_and_accuracy(model, x_test, y_test))


def train(tx):
    model = MLP(nnx.Rngs(SEED))  # the range test's first initial weights
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(SEED + 2)  # the same batches for every run
    history = [np.asarray(evaluate(model))]
    for _ in range(EPOCHS):
        perm = rng.permutation(n_train)
        for i in range(steps_per_epoch):
            b = perm[i * BATCH : (i + 1) * BATCH]
            train_step(model, optimizer, x_train[b], y_train[b])
        history.append(np.asarray(evaluate(model)))
    return np.stack(history)  # (EPOCHS + 1, 4): train loss, train acc, test loss, test acc


histories = {}
for name, make in OPTIMIZERS.items():
    schedule = tests[name].one_cycle(total_steps)
    print(f"{name}: one cycle {tests[name].bounds[0]:.2g} -> {tests[name].bounds[1]:.2g} -> "
          f"{float(schedule(total_steps - 1)):.2g}; default {DEFAULT_LR[name]:g}")
    for label, tx in [("default", make(DEFAULT_LR[name])), ("one cycle", make(schedule))]:
        histories[name, label] = train(tx)
        h = histories[name, label][-1]
        print(f"  {label:9s} train loss {h[0]:.4f} acc {h[1]:.4f} | test loss {h[2]:.4f} acc {h[3]:.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
epochs = np.arange(EPOCHS + 1)
for (name, label), h in histories.items():
    color = "C0" if name == "Adam" else "C1"
    style = "-" if label == "one cycle" else "--"
    axes[0].semilogy(epochs, h[:, 0], style, color=color, label=f"{name}, {label}")
    axes[1].plot(epochs, 100 * (1 - h[:, 3]), style, color=color, label=f"{name}, {label}")
for ax, title in zip(axes, ["train loss", "test error (%)"]):
    ax.set_title(title); ax.set_xlabel("epoch"); ax.grid(alpha=0.3)
axes[1].set_ylim(0, 20)
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What this run shows
# Computed from the histories above.

# %%
for name in OPTIMIZERS:
    d, c = histories[name, "default"][-1], histories[name, "one cycle"][-1]
    better = "one cycle" if c[3] > d[3] else "default" if d[3] > c[3] else "neither"
    print(f"{name}: test accuracy {100 * c[3]:.2f}% (one cycle) vs {100 * d[3]:.2f}% (default), "
          f"final train loss {c[0]:.4f} vs {d[0]:.4f}; higher test accuracy: {better}")
wins = sum(histories[n, "one cycle"][-1, 3] > histories[n, "default"][-1, 3] for n in OPTIMIZERS)
print(f"one cycle from the range test beat the default on test accuracy for {wins} of "
      f"{len(OPTIMIZERS)} optimizers ({EPOCHS} epochs, one seed).")

# %% [markdown]
# A difference of a few test images out of 719 is within seed-to-seed noise; repeat over seeds
# (`06_vmap_sweep` shows how to run many as one program) before drawing conclusions. The range
# test itself is cheap: one compiled loop of `RANGE_STEPS` steps per optimizer. To find the
# bounds of a schedule you already use, keep it in the optimizer: the test replaces a gradtx
# schedule on the learning rate by the constant it drives, and leaves the other hyperparameters
# (momentum schedules included) as they are.
