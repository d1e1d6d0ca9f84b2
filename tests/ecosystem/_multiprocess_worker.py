"""One process of a 2-process JAX job training with gradtx; run by test_multiprocess.py.

Each process sees 2 simulated CPU devices; together they form a 2 x 2 ("data", "model")
mesh, one process per "data" row, and talk over gloo through a coordinator on
127.0.0.1.  docs/distributed.md shows how to start the two processes by hand.

Modes:
  train      train twice from the same start, the optimizer state sharded like the params
             ("sharded") and ZeRO-1 ("zero1", state split over "data" too); the zero1 run
             saves a checkpoint after SAVE_AT steps.
  resume     new processes: restore that checkpoint and finish the zero1 run.
  reference  one process, one device, no mesh: the numbers the sharded runs must give.

Each process writes ``<dir>/<mode>-<run>-p<id>.npz`` (the reference
``reference-p0.npz``): the global params and optimizer state (gathered from both
processes), the losses, the hyperparameters and the trace count.  ``--die-at K`` makes this process SIGKILL itself before step K, to show what
happens to the other one.
"""

import argparse
import functools
import ipaddress
import os
import signal
import socket
import sys

import jax

parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=["train", "resume", "reference"])
parser.add_argument("--process-id", type=int, default=0)
parser.add_argument("--coordinator", default=None, help="host:port of process 0")
parser.add_argument("--dir", required=True, help="results and checkpoint, shared by both")
parser.add_argument("--heartbeat", type=int, default=10, help="seconds until a peer is dead")
parser.add_argument("--die-at", type=int, default=None, help="SIGKILL itself before this step")
args = parser.parse_args()

jax.config.update("jax_enable_x64", True)  # float64, so sharded and unsharded sums agree closely
jax.config.update("jax_numpy_dtype_promotion", "strict")
# A coordinator on loopback means one machine: then nothing needs to listen elsewhere.
LOOPBACK = args.coordinator is not None and args.coordinator.rsplit(":", 1)[0] == "127.0.0.1"
if args.mode != "reference":
    # CPU devices of different processes need a collectives library to all-reduce.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if LOOPBACK:
        # gloo listens on the address the machine's hostname resolves to, often a LAN
        # address; JAX 0.10 has no public option for it, so pin the factory JAX calls.
        from jax._src.lib import _jax

        _jax.make_gloo_tcp_collectives = functools.partial(
            _jax.make_gloo_tcp_collectives, hostname="127.0.0.1"
        )
    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=2,
        process_id=args.process_id,
        # JAX's default binds the coordinator to every interface; one machine needs loopback.
        coordinator_bind_address=args.coordinator,
        initialization_timeout=60,
        # The defaults (100 s, 300 s) would let a survivor of a dead peer hang for minutes.
        heartbeat_timeout_seconds=args.heartbeat,
        shutdown_timeout_seconds=30,
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import AxisType  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradtx  # noqa: E402

STEPS, BATCH = 8, 32
NAN_STEP = 2  # this step's batch has a NaN in a row of process 1: apply_if_finite skips it
SET_AT = 4  # before this step, every process raises the peak learning rate
SAVE_AT = 6  # the zero1 run is checkpointed after this many steps

rng = np.random.default_rng(0)
PARAMS = {
    "w1": rng.normal(size=(16, 8)) / 4,
    "b1": np.zeros(8),
    "w2": rng.normal(size=(8, 4)) / 3,
}
X = rng.normal(size=(STEPS, BATCH, 16))
Y = rng.normal(size=(STEPS, BATCH, 4))
X[NAN_STEP, 3 * BATCH // 4, 0] = np.nan


def make_optimizer():
    schedule = gradtx.schedules.warmup_cosine_decay(0.0, 1e-2, 3, STEPS)
    groups = {
        "decay": gradtx.adamw(schedule, weight_decay=1e-2),
        "no_decay": gradtx.adamw(schedule, weight_decay=0.0),
    }
    labels = {"w1": "decay", "w2": "decay", "b1": "no_decay"}
    return gradtx.apply_if_finite(gradtx.partition(groups, labels), max_consecutive_errors=3)


NEW_PEAK = {"decay/learning_rate.peak_value": 2e-2, "no_decay/learning_rate.peak_value": 2e-2}


def loss_fn(p, x, y):
    return jnp.mean((jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)


def make_step(opt, **jit_kwargs):
    traces = []

    def step(p, s, x, y):
        traces.append(None)  # runs once per trace, not per call
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return gradtx.apply_updates(p, updates), s, loss

    return jax.jit(step, **jit_kwargs), traces


def save_results(name, params, state, losses, traces):
    # Both processes gather the global arrays, so each file holds the whole model.
    params, state = multihost_utils.process_allgather((params, state), tiled=True)
    out = {}
    for prefix, tree in (("params", params), ("state", state)):
        for k, v in jax.tree_util.tree_leaves_with_path(tree):
            out[prefix + jax.tree_util.keystr(k)] = v
    for k, v in gradtx.get_hyperparams(state).items():
        out[f"hp/{k}"] = np.asarray(v)
    out["losses"] = np.asarray(losses)
    out["traces"] = np.asarray(len(traces))
    path = os.path.join(args.dir, f"{name}-p{jax.process_index()}.npz")
    np.savez(path, **out)


def train(step, params, state, start, stop, batch):
    losses = []
    for i in range(start, stop):
        if i == args.die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, as a crashed host
        if i == SET_AT:
            # Under jax.set_mesh the new values are made replicated over the mesh, the
            # layout the step already has, so it is not traced again.  Every process
            # must pass the same values: nothing compares them across processes.
            state = gradtx.set_hyperparams(state, NEW_PEAK)
        params, state, loss = step(params, state, *batch(i))
        losses.append(float(loss))
        print(f"p{args.process_id} step {i} loss {losses[-1]:.17g}", flush=True)
    return params, state, losses


if args.mode == "reference":
    opt = make_optimizer()
    step, traces = make_step(opt)
    params = jax.tree.map(jnp.asarray, PARAMS)
    params, state, losses = train(step, params, opt.init(params), 0, STEPS, lambda i: (X[i], Y[i]))
    save_results("reference", params, state, losses, traces)
    print("OK reference", flush=True)
    sys.exit(0)

# Multi-process: 4 devices, those of process i form row i of the mesh.
assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
pid = jax.process_index()
assert all(d.process_index == pid for d in mesh.devices[pid]), mesh.devices
# Megatron-style: w1 column-parallel, w2 row-parallel over "model"; the batch over "data".
param_sh = {
    k: NamedSharding(mesh, s)
    for k, s in {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None)}.items()
}
batch_sh = NamedSharding(mesh, P("data"))
replicated = NamedSharding(mesh, P())
LOCAL = slice(pid * BATCH // 2, (pid + 1) * BATCH // 2)  # this process's mesh row's rows


def batch(i):
    # Each process only ever holds its half of the global batch.
    return (
        jax.make_array_from_process_local_data(batch_sh, X[i, LOCAL]),
        jax.make_array_from_process_local_data(batch_sh, Y[i, LOCAL]),
    )


def state_shardings(opt, zero1):
    """A leaf shaped like a param gets its spec ("data" added for ZeRO-1); scalars replicate."""

    def sharding(path, leaf):
        if leaf.ndim == 0:
            return replicated
        key = next(k.key for k in reversed(path) if getattr(k, "key", None) in PARAMS)
        spec = list(param_sh[key].spec) + [None] * (leaf.ndim - len(param_sh[key].spec))
        free = [i for i, a in enumerate(spec) if a is None and leaf.shape[i] % 2 == 0]
        if zero1 and free:  # b1's only dim is taken by "model": it stays as the param
            spec[free[0]] = "data"
        return NamedSharding(mesh, P(*spec))

    abstract = jax.eval_shape(opt.init, PARAMS)
    return jax.tree_util.tree_map_with_path(sharding, abstract)


def checkpoint_target(opt, state_sh):
    abstract = jax.eval_shape(opt.init, PARAMS)
    as_target = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)  # noqa: E731
    return {
        "params": jax.tree.map(as_target, jax.eval_shape(lambda: PARAMS), param_sh),
        "opt_state": jax.tree.map(as_target, abstract, state_sh),
    }


def listening_addresses():
    """The addresses this process accepts TCP connections on (Linux /proc; gloo is Linux-only)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since listdir
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hexaddr = cols[1].split(":")[0]
                # The kernel prints each 32-bit word in host (little-endian) order.
                raw = b"".join(
                    bytes.fromhex(hexaddr[i : i + 8])[::-1] for i in range(0, len(hexaddr), 8)
                )
                found.append(ipaddress.ip_address(socket.inet_ntop(family, raw)))
    return found


def check_layout(state, state_sh, zero1):
    for leaf, sh in zip(jax.tree.leaves(state), jax.tree.leaves(state_sh)):
        assert leaf.sharding.is_equivalent_to(sh, leaf.ndim), (leaf.sharding, sh)
    mu_w1 = state.inner_state["decay"].inner_state[0].mu["w1"]
    # (16, 8) over 2 x 2 devices: ZeRO-1 keeps a quarter per device, plain sharding half.
    assert mu_w1.addressable_shards[0].data.shape == ((8, 4) if zero1 else (16, 4))


ckpt_dir = os.path.join(args.dir, "ckpt")
opt = make_optimizer()
with jax.set_mesh(mesh):
    for run in ("sharded", "zero1") if args.mode == "train" else ("zero1",):
        zero1 = run == "zero1"
        state_sh = state_shardings(opt, zero1)
        step, traces = make_step(
            opt, out_shardings=(param_sh, state_sh, replicated), donate_argnums=(0, 1)
        )
        if args.mode == "train":
            params = jax.device_put(PARAMS, param_sh)
            # Each device makes its own shards; nothing is built whole and then split.
            state = jax.jit(opt.init, out_shardings=state_sh)(params)
            check_layout(state, state_sh, zero1)
            stop = SAVE_AT if zero1 else STEPS
            params, state, losses = train(step, params, state, 0, stop, batch)
            if zero1:
                with ocp.StandardCheckpointer() as ckpt:
                    ckpt.save(ckpt_dir, {"params": params, "opt_state": state})
                    ckpt.wait_until_finished()
                print(f"p{pid} saved", flush=True)
                more = train(step, params, state, SAVE_AT, STEPS, batch)
                params, state, losses = more[0], more[1], losses + more[2]
        else:
            with ocp.StandardCheckpointer() as ckpt:
                restored = ckpt.restore(ckpt_dir, checkpoint_target(opt, state_sh))
            params, state = restored["params"], restored["opt_state"]
            assert type(state) is type(jax.eval_shape(opt.init, PARAMS))
            hp = gradtx.get_hyperparams(state)
            assert all(float(hp[k]) == v for k, v in NEW_PEAK.items())  # set before the save
            check_layout(state, state_sh, zero1)
            params, state, losses = train(step, params, state, SAVE_AT, STEPS, batch)
        check_layout(state, state_sh, zero1)
        if LOOPBACK:
            addresses = listening_addresses()
            assert addresses, "gloo and the coordinator should be listening"
            addresses = {getattr(a, "ipv4_mapped", None) or a for a in addresses}
            assert all(a.is_loopback for a in addresses), addresses
            print(f"p{pid} listening only on {sorted(map(str, addresses))}", flush=True)
        save_results(f"{args.mode}-{run}", params, state, losses, traces)
        print(f"p{pid} OK {args.mode} {run}", flush=True)
