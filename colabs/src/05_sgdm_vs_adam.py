# %% [markdown]
# # SGD with momentum vs the Adam family, on a Flax model
#
# A common observation (Wilson et al., 2017, "The Marginal Value of Adaptive Gradient
# Methods"; Keskar & Socher, 2017, who proposed SWATS because of it) is that **adaptive
# methods train fast, while SGD with momentum generalises better**. AdamW, RAdam, SWATS and
# Ranger were all proposed partly to close that gap.
#
# Here a small Flax NNX MLP is trained on scikit-learn's digits (bundled, no download) with
# SGDM, Adam, AdamW, RAdam, SWATS and Ranger, from the same initial weights and the same data
# order, and we plot train and test curves. This is one small problem and one seed: read the
# results as what they are, whichever way they come out. The conclusion printed at the end is
# computed from the numbers, not written in advance.

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

EPOCHS = 2 if FAST else 80
BATCH = 128 if FAST else 32
SEED = 0

# %% [markdown]
# ## Data: 8x8 digits, 1797 images, a fixed 60/40 split
# A small training set makes over-fitting, and so the generalisation gap, visible.

# %%
x, y = load_digits(return_X_y=True)
order = np.random.default_rng(SEED).permutation(len(x))
x, y = x[order].astype(np.float32) / 16.0, y[order].astype(np.int32)
n_train = int(0.6 * len(x))
x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
print(f"train {x_train.shape}, test {x_test.shape}")

# %% [markdown]
# ## Model and training loop
# `nnx.Optimizer(model, tx, wrt=nnx.Param)` takes any gradtx optimizer unchanged.

# %%
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


@nnx.jit
def train_step(model, optimizer, x, y):
    grads = nnx.grad(lambda m: loss_and_accuracy(m, x, y)[0])(model)
    optimizer.update(model, grads)


@nnx.jit
def evaluate(model):
    return jnp.stack(loss_and_accuracy(model, x_train, y_train) + loss_and_accuracy(model, x_test, y_test))


def train(tx):
    model = MLP(nnx.Rngs(SEED))  # same initial weights for every optimizer
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(SEED)  # same batches for every optimizer
    history = [np.asarray(evaluate(model))]
    for epoch in range(EPOCHS):
        perm = rng.permutation(n_train)
        for i in range(0, n_train - BATCH + 1, BATCH):
            idx = perm[i : i + BATCH]
            train_step(model, optimizer, x_train[idx], y_train[idx])
        history.append(np.asarray(evaluate(model)))
    return np.stack(history)  # (epochs + 1, 4): train loss, train acc, test loss, test acc

# %% [markdown]
# ## The optimizers
# Each method's customary learning rate for a network like this; no per-method tuning, no
# schedule, no weight decay except AdamW's default 1e-2.

# %%
OPTIMIZERS = {
    "SGDM": gradtx.sgd(0.05, momentum=0.9),
    "Adam": gradtx.adam(1e-3),
    "AdamW": gradtx.adamw(1e-3, weight_decay=1e-2),
    "RAdam": gradtx.radam(1e-3),
    "SWATS": gradtx.swats(1e-3),
    "Ranger": gradtx.ranger(1e-3),
}
histories = {}
for name, tx in OPTIMIZERS.items():
    start = time.perf_counter()
    histories[name] = train(tx)
    h = histories[name][-1]
    print(f"{name:7s} train loss {h[0]:.4f} acc {h[1]:.4f} | test loss {h[2]:.4f} acc {h[3]:.4f}"
          f" | {time.perf_counter() - start:.1f}s")

# %% [markdown]
# ## Train vs test curves

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
epochs = np.arange(EPOCHS + 1)
for name, h in histories.items():
    (line,) = axes[0].semilogy(epochs, h[:, 0], label=name)
    axes[1].semilogy(epochs, h[:, 2], color=line.get_color(), label=name)
    axes[2].plot(epochs, 100 * (1 - h[:, 3]), color=line.get_color(), label=name)
for ax, title in zip(axes, ["train loss", "test loss", "test error (%)"]):
    ax.set_title(title); ax.set_xlabel("epoch"); ax.grid(alpha=0.3)
axes[2].set_ylim(0, 20)
axes[2].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What this run shows
# Computed from the histories above: which optimizer reached a low training loss first, and
# which generalised best at the end.

# %%
target = 0.05
first = {n: next((e for e, v in enumerate(h[:, 0]) if v < target), None) for n, h in histories.items()}
reached = {n: e for n, e in first.items() if e is not None}
if reached:
    fastest = min(reached, key=reached.get)
    print(f"train loss < {target}: " + ", ".join(f"{n} at epoch {e}" for n, e in sorted(reached.items(), key=lambda t: t[1])))
    print(f"fastest to fit the training set: {fastest}")
else:
    print(f"no optimizer reached train loss < {target} in {EPOCHS} epochs")
best_test = max(histories, key=lambda n: histories[n][-1, 3])
ranking = sorted(histories, key=lambda n: -histories[n][-1, 3])
print("final test accuracy, best first: " + ", ".join(f"{n} {100 * histories[n][-1, 3]:.2f}%" for n in ranking))
gap = {n: histories[n][-1, 2] - histories[n][-1, 0] for n in histories}
print("generalisation gap (test loss - train loss): " + ", ".join(f"{n} {g:.3f}" for n, g in gap.items()))
adaptive_best = max(histories[n][-1, 3] for n in histories if n != "SGDM")
verdict = ("SGDM generalises at least as well as the best adaptive method here"
           if histories["SGDM"][-1, 3] >= adaptive_best
           else "an adaptive method beats SGDM on test accuracy here")
print(f"verdict on this run ({EPOCHS} epochs, one seed): {verdict}.")

# %% [markdown]
# Test accuracy differences of a fraction of a percent on 719 test images are a handful of
# images: within seed-to-seed noise. To make a claim, repeat over seeds (the `06_vmap_sweep`
# notebook shows how to run many variants as one compiled program) and tune each method's
# learning rate, as Wilson et al. did.
