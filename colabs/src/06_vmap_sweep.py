# %% [markdown]
# # A learning-rate sweep as one compiled program
#
# gradtx stores every hyperparameter in the optimizer state as an array. So a batch of
# states that differ only in their learning rate is just a pytree with a leading axis, and
# `jax.vmap` trains all of them **in one compiled program**: one compilation, one XLA
# executable, all variants advancing together (on a GPU, in the same kernels).
#
# We sweep Adam's learning rate over 16 values for a small MLP on scikit-learn's digits, then
# sweep a 2-D grid (learning rate x b1), and check that a vmapped run equals the same run
# trained alone.

# %% setup

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import gradtx

STEPS = 100 if FAST else 1500
x, y = load_digits(return_X_y=True)
x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)


def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (64, 64)) * 0.18, "b1": jnp.zeros(64),
            "w2": jax.random.normal(k2, (64, 10)) * 0.18, "b2": jnp.zeros(10)}


def loss_fn(p):
    logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

# %% [markdown]
# ## Batched states
# `opt.init` once, then `set_hyperparams` under `vmap` writes a different learning rate into
# each copy. Everything else in the state (moments, counts, b1, b2, eps) is identical.

# %%
opt = gradtx.adam(1e-3)
params = init_params(jax.random.PRNGKey(0))
learning_rates = jnp.logspace(-4, 0, 16)


def init_with(lr):
    return params, gradtx.set_hyperparams(opt.init(params), learning_rate=lr)


batch_params, batch_state = jax.vmap(init_with)(learning_rates)
print("learning_rate in state:", gradtx.get_hyperparams(batch_state)["learning_rate"].shape)

# %% [markdown]
# ## One compiled program for the whole sweep

# %%
traces = 0


def train(params, state):
    global traces
    traces += 1  # counts traces, i.e. compilations

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return (gradtx.apply_updates(params, updates), state), loss

    (params, state), losses = jax.lax.scan(step, (params, state), None, length=STEPS)
    return params, state, losses


sweep = jax.jit(jax.vmap(train))
final_params, final_state, losses = sweep(batch_params, batch_state)
losses = np.asarray(losses)
print(f"{len(learning_rates)} runs x {STEPS} steps, traced {traces} time(s)")
assert traces == 1
best = int(np.nanargmin(np.where(np.isfinite(losses[:, -1]), losses[:, -1], np.inf)))
print(f"best learning rate: {float(learning_rates[best]):.2e} (final loss {losses[best, -1]:.4f})")

# %% [markdown]
# A different set of 16 learning rates reuses the same executable: the rates are data.

# %%
_ = sweep(*jax.vmap(init_with)(jnp.logspace(-3, -1, 16)))
print("traces after a second sweep:", traces)
assert traces == 1

# %% [markdown]
# ## A vmapped run equals the same run alone
# (Up to float32 rounding: batched matrix products may sum in another order.)

# %%
i = 7
alone = jax.jit(train)(*init_with(learning_rates[i]))[2]
print("max |difference| of the loss curve:", float(jnp.max(jnp.abs(alone - losses[i]))))
np.testing.assert_allclose(np.asarray(alone), losses[i], rtol=1e-4, atol=1e-6)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
colors = plt.cm.viridis(np.linspace(0, 1, len(learning_rates)))
for c, lr, curve in zip(colors, learning_rates, losses):
    axes[0].semilogy(curve, color=c, lw=1.2, label=f"{float(lr):.1e}")
axes[0].set_xlabel("step"); axes[0].set_title("training loss per learning rate")
axes[0].legend(ncol=2, fontsize=7)
finals = np.where(np.isfinite(losses[:, -1]), losses[:, -1], np.nan)
axes[1].loglog(np.asarray(learning_rates), finals, "o-")
axes[1].set_xlabel("learning rate"); axes[1].set_title(f"final loss after {STEPS} steps")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Two hyperparameters at once: learning rate x b1
# Flatten the grid into one batch axis; still one compilation (a new batch size is a new
# shape, hence one more trace for this second program).

# %%
lr_grid, b1_grid = jnp.meshgrid(jnp.logspace(-3.5, -1, 6), jnp.array([0.0, 0.5, 0.9, 0.99]))


def init_grid(lr, b1):
    return params, gradtx.set_hyperparams(opt.init(params), learning_rate=lr, b1=b1)


grid_losses = jax.jit(jax.vmap(train))(*jax.vmap(init_grid)(lr_grid.ravel(), b1_grid.ravel()))[2]
final = np.asarray(grid_losses[:, -1]).reshape(lr_grid.shape)
plt.figure(figsize=(6.5, 3.5))
plt.imshow(np.log10(final), aspect="auto", cmap="magma_r")
plt.colorbar(label="log10 final loss")
plt.xticks(range(lr_grid.shape[1]), [f"{v:.0e}" for v in np.asarray(lr_grid[0])])
plt.yticks(range(b1_grid.shape[0]), [f"{float(v):.3g}" for v in np.asarray(b1_grid[:, 0])])
plt.xlabel("learning rate"); plt.ylabel("b1"); plt.title("Adam: final training loss")
plt.show()
