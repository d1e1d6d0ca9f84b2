# %% [markdown]
# # gradtx quickstart
#
# gradtx is a library of gradient transformations for JAX. An optimizer is a pure pair
# `(init, update)` over pytrees (an optax `GradientTransformation`), built by chaining small
# public primitives, and its **hyperparameters live in the optimizer state as data**.
#
# This notebook: train a model with `gradtx.adam`, read and change the learning rate between
# steps without recompiling, and build an optimizer of your own from primitives.

# %% setup

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import gradtx

print("gradtx", gradtx.__version__, "| jax", jax.__version__, "|", jax.devices()[0].platform)

# %% [markdown]
# ## A model and a loss
# A two-layer network fitting a noisy sine: params are a plain dict of arrays.

# %%
key = jax.random.PRNGKey(0)
kx, kn, k1, k2 = jax.random.split(key, 4)
x = jnp.linspace(-3, 3, 256)[:, None]
y = jnp.sin(x) + 0.1 * jax.random.normal(kn, x.shape)
params = {
    "w1": jax.random.normal(k1, (1, 32)), "b1": jnp.zeros(32),
    "w2": jax.random.normal(k2, (32, 1)) / 6, "b2": jnp.zeros(1),
}


def predict(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def loss_fn(p):
    return jnp.mean((predict(p, x) - y) ** 2)

# %% [markdown]
# ## Train with `gradtx.adam`
# `opt.init(params)` makes the state; `opt.update(grads, state, params)` returns updates that
# `gradtx.apply_updates` adds to the params. The whole step is jit-compiled.

# %%
opt = gradtx.adam(learning_rate=1e-2)
state = opt.init(params)
traces = 0


@jax.jit
def step(params, state):
    global traces
    traces += 1  # runs only when JAX traces (compiles) the step
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return gradtx.apply_updates(params, updates), state, loss


steps = 200 if FAST else 2000
losses = []
for i in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {steps} steps")

# %% [markdown]
# ## Hyperparameters are data
# They are stored in the state. Read them with `get_hyperparams`; change them with
# `set_hyperparams` between steps: the jitted step is **not** recompiled.

# %%
print({k: f"{float(v):.4g}" for k, v in gradtx.get_hyperparams(state).items()})
state = gradtx.set_hyperparams(state, learning_rate=2e-3)
for i in range(steps // 2):
    params, state, loss = step(params, state)
    losses.append(float(loss))
print("learning rate now", float(gradtx.get_hyperparams(state)["learning_rate"]))
print("times the step was traced:", traces)
assert traces == 1

plt.figure(figsize=(6, 3.5))
plt.semilogy(losses)
plt.axvline(steps, color="gray", ls="--", label="learning rate 1e-2 -> 2e-3")
plt.xlabel("step"); plt.ylabel("training loss"); plt.legend(); plt.show()

# %% [markdown]
# ## Your own optimizer from primitives
# Named optimizers are short chains. SGD with L2 regularisation, Nesterov momentum and a
# learning rate is `add_l2 -> add_momentum -> scale_by_learning_rate`, and it equals
# `gradtx.sgd(..., nesterov=True, weight_decay=...)` exactly.

# %%
mine = gradtx.chain(
    gradtx.add_l2(1e-4),
    gradtx.add_momentum(0.9, nesterov=True),
    gradtx.scale_by_learning_rate(0.05),
)
named = gradtx.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
grads = jax.grad(loss_fn)(params)
u1, _ = mine.update(grads, mine.init(params), params)
u2, _ = named.update(grads, named.init(params), params)
print("same updates:", all(bool(jnp.array_equal(a, b)) for a, b in
                           zip(jax.tree.leaves(u1), jax.tree.leaves(u2))))

# %% [markdown]
# ## Where next
# - `02_primitives`: Adam, AdamW and RAdam built from primitives and checked against optax.
# - `03_optimizer_zoo`: trajectories of eleven optimizers on 2-D surfaces.
# - `05_sgdm_vs_adam`: a Flax model, SGDM vs Adam-family, train vs test curves.
# - `06_vmap_sweep`: a learning-rate sweep as one compiled program.
# - `07_sharding`: sharded training on a device mesh.
# - From a shell: `python -m gradtx` trains a small network on scikit-learn's digits with
#   seven optimizers and writes a plot of the training curves.
