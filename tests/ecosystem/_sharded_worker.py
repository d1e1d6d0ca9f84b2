"""Run by test_distributed.py in a subprocess with 8 simulated CPU devices.

Each check prints ``OK <name>``; any failure raises, so the subprocess exits non-zero
with the traceback on stderr.
"""

import os
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64: sharded and single-device sums agree to 1e-12
jax.config.update("jax_numpy_dtype_promotion", "strict")

import gradtx  # noqa: E402

assert jax.device_count() == 8
DATA, MODEL = 4, 2
mesh = jax.make_mesh((DATA, MODEL), ("data", "model"), axis_types=(AxisType.Auto,) * 2)

keys = jax.random.split(jax.random.PRNGKey(0), 4)
params = {
    "w1": jax.random.normal(keys[0], (16, 8)) / 4,
    "b1": jnp.zeros(8),
    "w2": jax.random.normal(keys[1], (8, 4)) / 3,
}
x = jax.random.normal(keys[2], (32, 16))
y = jax.random.normal(keys[3], (32, 4))
# Megatron-style: w1 column-parallel, w2 row-parallel over "model"; the batch over "data".
param_specs = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None)}
param_sh = jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs)
batch_sh = NamedSharding(mesh, P("data"))


def loss_fn(p, x, y):
    return jnp.mean((jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)


OPTIMIZERS = {
    "adamw": lambda: gradtx.adamw(1e-2, weight_decay=1e-3, amsgrad=True),
    "sgd-nesterov": lambda: gradtx.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
}
NEWER = (
    "radam",
    "adabound",
    "amsbound",
    "swats",
    "ranger",
    "adagrad",
    "rmsprop",
    "adadelta",
    "nadam",
)
# The first round's other optimizers with their defaults, under the Megatron layout;
# test_contract.py's 8-device test runs every registry case on a sharded mesh.
for name in NEWER:
    OPTIMIZERS[name] = getattr(gradtx, name)


def make_step(opt, **jit_kwargs):
    def step(p, s, x, y):
        grads = jax.grad(loss_fn)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return gradtx.apply_updates(p, updates), s

    return jax.jit(step, **jit_kwargs)


def run(step, p, s, n=5):
    for _ in range(n):
        p, s = step(p, s, xs, ys)
    return p, s


def assert_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)


def zero1_sharding(leaf):
    """ZeRO-1: the leaf's own (param-following) sharding plus "data" on a free, divisible dim."""
    spec = list(leaf.sharding.spec) + [None] * (leaf.ndim - len(leaf.sharding.spec))
    for i, (size, axis) in enumerate(zip(leaf.shape, spec)):
        if axis is None and size % DATA == 0:
            spec[i] = "data"
            break
    return NamedSharding(mesh, P(*spec))


def follows_params(state, what):
    """Every state leaf shaped like a param carries that param's sharding."""
    checked = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        key = next((k.key for k in reversed(path) if getattr(k, "key", None) in params), None)
        if key is None or leaf.shape != params[key].shape:
            assert leaf.ndim == 0, (what, path)  # counts, hyperparameters: replicated scalars
            assert leaf.sharding.is_fully_replicated, (what, path, leaf.sharding)
            continue
        assert leaf.sharding.is_equivalent_to(param_sh[key], leaf.ndim), (what, path, leaf.sharding)
        checked += 1
    assert checked >= 3, what


def explicit_transforms():
    """Transforms that reshape or contract leaves, on an explicit mesh (jax.make_mesh's
    default): each equals its unsharded run, and its output is on the leaf's sharding.
    Each of the three raised a ShardingTypeError there, eagerly and jitted alike (the
    same sharding rules): init runs eagerly, the updates jitted, which is faster."""
    mesh = jax.make_mesh((DATA, MODEL), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    rng = np.random.default_rng(0)

    def put(tree, specs):
        return jax.tree.map(lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), tree, specs)

    def same_sharding(out, like):
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(like)):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)

    def steps(opt, p, grads):
        s = opt.init(p)
        step = jax.jit(opt.update)
        out = []
        for g in grads:
            u, s = step(g, s, p)
            p = gradtx.apply_updates(p, u)
            out.append(u)
        return out, p, s

    def on_mesh(opt, tree, grads, specs, grad_specs=None):
        """The steps on the mesh (grads split by grad_specs, default specs) equal the
        unsharded ones, and each update is on its param's sharding."""
        want = steps(opt, tree, grads)
        with jax.set_mesh(mesh):
            p = put(tree, specs)
            got = steps(opt, p, [put(t, grad_specs or specs) for t in grads])
            assert_close(got, want)
            for u in got[0]:
                same_sharding(u, p)
        return got, p

    # flatten: w1 split off its first axis (raveling it raised); with max_leaf_size=100,
    # w1 keeps its own buffer (on both axes) and b1 (replicated) and w2 (split) share
    # one (concatenating them raised).
    grads = [
        jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params) for _ in range(3)
    ]
    mixed = {"w1": P("data", "model"), "b1": P(), "w2": P("model", None)}
    # "split rows": every leaf split along its first axis alike, so the buffer and its
    # state stay split (gathering them whole cost every device the whole state)
    rows = {"w1": P("data", None), "b1": P("data"), "w2": P("data", None)}
    for label, size, specs in (
        ("65536", 2**16, param_specs), ("100", 100, mixed), ("split rows", 2**16, rows)
    ):  # fmt: skip
        got, p = on_mesh(gradtx.flatten(gradtx.adam(0.1), max_leaf_size=size), params, grads, specs)
        same_sharding(got[1], p)
        if specs is rows:
            moments = [x for x in jax.tree.leaves(got[2]) if x.ndim == 1 and x.size > 8]
            assert moments and all(x.sharding.spec == P("data") for x in moments), moments
        print(f"OK explicit flatten {label}", flush=True)
    # outside jax.set_mesh, with arrays on an explicit mesh all the same: the gather
    # named no mesh (a bare PartitionSpec), which only the context supplies
    opt = gradtx.flatten(gradtx.adam(0.1), max_leaf_size=100)
    got = steps(opt, put(params, mixed), [put(t, mixed) for t in grads])
    assert_close(got, steps(opt, params, grads))
    print("OK explicit flatten outside set_mesh", flush=True)

    # dpsgd: per-example gradients split over "data" along the example axis (data
    # parallelism); summing them over examples raised.
    per_example = [
        jax.tree.map(lambda a: jnp.asarray(rng.normal(size=(32, *a.shape))), params)
        for _ in range(2)
    ]
    example_specs = jax.tree.map(lambda s: P("data", *s), param_specs)
    # each update on its param's sharding: the example axis summed away
    opt = gradtx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.7, seed=0)
    on_mesh(opt, params, per_example, param_specs, example_specs)
    print("OK explicit dpsgd", flush=True)

    # galore: a 3-D leaf split on an axis merged into the projected matrix (the reshape
    # to the matrix raised); bases renewed every 2 steps.
    kernel = {"k": jnp.asarray(rng.normal(size=(2, 4, 8)))}
    grads = [{"k": jnp.asarray(rng.normal(size=(2, 4, 8)))} for _ in range(3)]
    numbers = gradtx.GaLoreDimensionNumbers(reduction_axis=(0, 1), output_axis=2)
    opt = gradtx.galore(0.1, rank=2, update_proj_gap=2, weight_dimension_numbers={"k": numbers})
    on_mesh(opt, kernel, grads, {"k": P(None, "data", "model")})
    print("OK explicit galore", flush=True)


if sys.argv[1:] == ["explicit-transforms"]:
    explicit_transforms()
    print("ALL OK", flush=True)
    sys.exit(0)

# One device, no mesh, no shardings: the reference numbers.
single = {}
for name, make in OPTIMIZERS.items():
    opt = make()
    xs, ys = x, y
    single[name] = run(make_step(opt), params, opt.init(params))

with jax.set_mesh(mesh):
    xs, ys = jax.device_put(x, batch_sh), jax.device_put(y, batch_sh)
    sharded_params = jax.device_put(params, param_sh)
    for name, make in OPTIMIZERS.items():
        opt = make()
        p1, s1 = single[name]

        # Sharded params: init follows them, and so does the jitted step's output.
        state = opt.init(sharded_params)
        follows_params(state, f"{name} init")
        p8, s8 = run(make_step(opt), sharded_params, state)
        follows_params(s8, f"{name} after steps")
        for k in params:
            assert p8[k].sharding.is_equivalent_to(param_sh[k], p8[k].ndim), (name, k)
        assert_close((p8, s8), (p1, s1))
        print(f"OK sharded {name}", flush=True)

        # ZeRO-1: state sharded over "data" too; params and numbers unchanged.
        zero_sh = jax.tree.map(zero1_sharding, opt.init(sharded_params))
        state = jax.device_put(opt.init(sharded_params), zero_sh)
        step = make_step(opt, out_shardings=(param_sh, zero_sh), donate_argnums=(1,))
        pz, sz = run(step, sharded_params, state)
        assert_close((pz, sz), (p1, s1))
        for leaf, sh in zip(jax.tree.leaves(sz), jax.tree.leaves(zero_sh)):
            assert leaf.sharding.is_equivalent_to(sh, leaf.ndim)
        mu_w1 = next(l for l in jax.tree.leaves(sz) if l.shape == (16, 8))
        assert mu_w1.addressable_shards[0].data.shape == (16 // DATA, 8 // MODEL)  # 1/8 per device
        print(f"OK zero1 {name}", flush=True)

# Explicit sharding mode (jax.sharding.AxisType.Explicit): sharding is part of each
# array's type, so even a jitted init gives state laid out like the params.
explicit = jax.make_mesh((DATA, MODEL), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
with jax.set_mesh(explicit):
    sharded = jax.device_put(
        params, jax.tree.map(lambda s: NamedSharding(explicit, s), param_specs)
    )
    param_sh = jax.tree.map(lambda a: a.sharding, sharded)
    for name, make in OPTIMIZERS.items():
        follows_params(jax.jit(make().init)(sharded), f"{name} explicit jit(init)")
        print(f"OK explicit init {name}", flush=True)

print("ALL OK", flush=True)
sys.exit(0)
