# %% [markdown]
# # Sharded training on a device mesh
#
# JAX's SPMD compiler is gradtx's distributed runtime: a jitted training step over sharded
# arrays is partitioned by XLA, optimizer included. gradtx's part is layout: **optimizer state
# follows the sharding of the params**, and counters and hyperparameters are replicated
# scalars. This notebook:
#
# 1. builds a 4 x 2 mesh with a `data` and a `model` axis (8 simulated CPU devices here; the
#    same code runs on 8 GPUs or a TPU slice),
# 2. trains an MLP with data parallelism over `data` and tensor (Megatron-style) parallelism
#    over `model`, and checks the numbers against a single device,
# 3. shards the optimizer state across `data` as well (ZeRO stage 1) with plain
#    `jax.sharding`,
# 4. explains how the same code runs on several hosts.
#
# The setup cell asks XLA for 8 CPU devices **before JAX is imported**. (In Colab, restart the
# runtime if JAX was already imported.)

# %% setup
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
if "jax" in sys.modules:
    print("JAX was imported before this cell: restart the kernel to get 8 CPU devices.")

# %%
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.datasets import load_digits

import gradtx

print(jax.device_count(), "devices:", jax.devices())
STEPS = 20 if FAST else 300
mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
print(mesh)

# %% [markdown]
# ## Model, data and shardings
# `w1` is split by columns and `w2` by rows over `model` (so the hidden layer is split and
# one all-reduce joins the two halves); the batch is split over `data`.

# %%
x, y = load_digits(return_X_y=True)
n = (len(x) // 8) * 8  # divisible by the data axis
x, y = jnp.asarray(x[:n] / 16.0, jnp.float32), jnp.asarray(y[:n], jnp.int32)
k1, k2 = jax.random.split(jax.random.PRNGKey(0))
params = {"w1": jax.random.normal(k1, (64, 128)) * 0.18, "b1": jnp.zeros(128),
          "w2": jax.random.normal(k2, (128, 10)) * 0.12, "b2": jnp.zeros(10)}
param_specs = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}
param_sh = jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs)
batch_sh = NamedSharding(mesh, P("data"))


def loss_fn(p, x, y):
    logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


opt = gradtx.adamw(3e-3, weight_decay=1e-2)


def step_fn(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return gradtx.apply_updates(params, updates), state, loss

# %% [markdown]
# ## One device, for reference

# %%
step1 = jax.jit(step_fn)
p1, s1 = params, opt.init(params)
for _ in range(STEPS):
    p1, s1, loss1 = step1(p1, s1, x, y)
print("single device, final loss", float(loss1))

# %% [markdown]
# ## On the mesh
# Put params and batch on the mesh; `opt.init` on sharded params gives state sharded like them.
# The loop keeps each step's params and state (on the host) to check it against one device
# below. It waits for each step to finish (`block_until_ready`): with 8 *simulated* devices
# on a machine with few cores (Colab has 2), queued-up steps can starve each other's
# collectives of threads and XLA aborts after 40 s. Real devices do not need this.

# %%
def train(step, params, state, xs, ys):
    """STEPS steps; also returns (params, state, params after) of every step, on the host."""
    history = []
    for _ in range(STEPS):
        before = jax.device_get((params, state))
        params, state, loss = jax.block_until_ready(step(params, state, xs, ys))
        history.append(before + (jax.device_get(params),))
    return params, state, loss, history


with jax.set_mesh(mesh):
    sharded_params = jax.device_put(params, param_sh)
    xs, ys = jax.device_put((x, y), batch_sh)
    state = opt.init(sharded_params)
    mu = state.inner_state[0].mu  # adamw's first moment, a dict like params
    for k in params:
        print(f"{k:3s} param {str(sharded_params[k].sharding.spec):22s} mu {mu[k].sharding.spec}")
    jax.debug.visualize_array_sharding(mu["w1"])
    p8, s8, loss8, history8 = train(jax.jit(step_fn), sharded_params, state, xs, ys)
print("8 devices, final loss", float(loss8))
print("after training, mu['w1'] is still", s8.inner_state[0].mu["w1"].sharding.spec)

# %% [markdown]
# ## Is it the same computation? How far apart can the two runs be?
# Sharding changes which numbers are added first: the batch gradient is summed per `data`
# shard and then across shards, and `w2`'s contraction over the hidden layer is split over
# `model`. In float32 (unit roundoff u = 2^-24) a sum of n terms computed in two orders differs
# by at most about n·u of the sum of the terms' magnitudes. So **one step** from the same
# params and state agrees to rounding:
#
# * an AdamW step moves each weight by at most `max_step = lr·(1 + (1-b1)/sqrt(1-b2))`
#   (Kingma & Ba's bound on Adam's step, plus weight decay on weights below 1);
# * the two gradients differ by a relative n·u at most (n = 1792 examples is the longest sum;
#   this assumes the terms do not cancel), so m̂ and sqrt(v̂) do too, and the update by 2·n·u;
# * storing `params + update` in float32 rounds each result by u·|param|.
#
# Bound per step: `|Δ| ≤ 2·n·u·max_step + 2·u·max|param|`, about 3e-6 here. The cell checks
# it at **every** step of the sharded run, recomputing each step on one device.
#
# **Over N steps** there is no useful bound. Each step starts from slightly different params,
# and training does not shrink differences: an example whose ReLU input is within rounding of
# 0 switches the unit on in one run and off in the other, and Adam divides by sqrt(v̂), so
# such a switch moves a weight by about lr. All one can promise is the trivial
# `2·N·max_step` (7.5 for 300 steps): true, and useless as a check. So the N-step
# difference is printed next to its yardstick: a single-device run on the same examples in
# another order, which changes the summation order in the same way with no sharding at all.

# %%
u = 2.0**-24
n_terms = len(x)
max_step = 3e-3 * (1 + (1 - 0.9) / np.sqrt(1 - 0.999))
max_param = max(float(np.max(np.abs(leaf))) for _, _, after in history8 for leaf in jax.tree.leaves(after))
bound = 2 * n_terms * u * max_step + 2 * u * max_param


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(l) - np.asarray(r)))) for l, r in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def worst_step_error(history):
    """The largest difference between a sharded step and the same step on one device."""
    return max(max_diff(after, step1(p, s, x, y)[0]) for p, s, after in history)


err8 = worst_step_error(history8)
print(f"one step, 8 devices vs 1 device, worst over {STEPS} steps: {err8:.2e} (bound {bound:.2e})")
assert err8 <= bound

perm = np.random.default_rng(0).permutation(len(x))
pr, sr = params, opt.init(params)
for _ in range(STEPS):
    pr, sr, _ = step1(pr, sr, x[perm], y[perm])
print(f"after {STEPS} steps, max |params - params(1 device)|:")
print(f"  8 devices:                      {max_diff(p8, p1):.2e}")
print(f"  1 device, examples permuted:    {max_diff(pr, p1):.2e}  (the yardstick)")
print(f"final losses: 1 device {float(loss1):.6f}, 8 devices {float(loss8):.6f}")
print(f"the only a-priori bound after {STEPS} steps, 2·N·max_step: {2 * STEPS * max_step:.2g}")

# %% [markdown]
# ## ZeRO-1: shard the optimizer state over `data` too
# Every row of the `data` axis held a full copy of the moments above. ZeRO stage 1 splits
# them across `data`: take each state leaf's own (param-following) spec and put `data` on
# its first free dimension that the axis divides. The step is unchanged; `out_shardings`
# keeps the state in that layout and XLA adds the gathers the update needs. The update is
# elementwise, so only the placement changes; each step is checked against one device with
# the bound above.

# %%
DATA = mesh.shape["data"]


def zero1(leaf):
    spec = list(leaf.sharding.spec) + [None] * (leaf.ndim - len(leaf.sharding.spec))
    for i, (size, axis) in enumerate(zip(leaf.shape, spec)):
        if axis is None and size % DATA == 0:
            spec[i] = "data"
            break
    return NamedSharding(mesh, P(*spec))


with jax.set_mesh(mesh):
    state = opt.init(sharded_params)
    state_sh = jax.tree.map(zero1, state)
    state = jax.device_put(state, state_sh)
    zero_step = jax.jit(step_fn, out_shardings=(param_sh, state_sh, None), donate_argnums=(1,))
    pz, sz, lossz, historyz = train(zero_step, sharded_params, state, xs, ys)

mu_w1 = sz.inner_state[0].mu["w1"]
print("ZeRO-1 mu['w1'] spec:", mu_w1.sharding.spec, "| shard on one device:",
      mu_w1.addressable_shards[0].data.shape, "of", mu_w1.shape)
jax.debug.visualize_array_sharding(mu_w1)
errz = worst_step_error(historyz)
print(f"one step, ZeRO-1 vs 1 device, worst over {STEPS} steps: {errz:.2e} (bound {bound:.2e})")
assert errz <= bound
print("ZeRO-1 params equal plain sharding's bit for bit:", max_diff(pz, p8) == 0.0)

# %% [markdown]
# ## The same step on several processes
# Nothing in `step_fn`, the specs or `zero1` changes. On each host (process):
#
# ```python
# jax.distributed.initialize()   # coordinator address etc. from the environment (TPU, SLURM, ...)
# mesh = jax.make_mesh((jax.process_count() * local_data, model), ("data", "model"))
# x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local_batch)
# ```
#
# `jax.devices()` then lists every process's devices, the mesh spans them and the jitted step
# is one SPMD program; the reductions over `data` cross processes. Keep `model` within a host
# (fast links) and `data` across hosts. A notebook is one process, so this one stops here:
# `tests/ecosystem/test_multiprocess.py` runs two processes of 2 CPU devices each as one
# 2 x 2 mesh, checks the result against one device, saves and restores with orbax, and kills
# one process to show the other fails fast. `docs/distributed.md` has its commands, the
# per-process code, and what to set (`heartbeat_timeout_seconds`, `set_hyperparams` under
# `jax.set_mesh` with the same value in every process).
