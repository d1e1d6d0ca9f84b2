"""Contract tests over every optimizer in ``tests/registry.py``.

Convergence, jit == eager, stable state structure and dtypes, no retracing,
vmap sweeps, identical programs for different numbers, and sharding.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.conftest import xla_compiles
from tests.registry import IDS
from tests.registry import OPTIMIZER_NAMES
from tests.registry import REGISTRY
from tests.registry import assert_types_kept
from tests.registry import signature

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 2)), dtype),
        "b": jnp.asarray(rng.normal(size=(2,)), dtype),
    }


def _grads(n, dtype=jnp.float32, seed=1):
    return [_params(dtype, seed + i) for i in range(n)]


def _fixed_objective(params):
    return sum(jnp.sum(jnp.sin(x) ** 2) for x in jax.tree.leaves(params))


def _run(opt, params, grads, update=None, state=None):
    update = update or opt.update
    state = opt.init(params) if state is None else state
    for g in grads:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
    return params, state


# ------------------------------------------------------------------ registry


def test_registry_covers_every_optimizer():
    defined = {
        name
        for name in gradtx.__all__
        if inspect.isfunction(getattr(gradtx, name))
        and getattr(gradtx, name).__module__.startswith("gradtx.optimizers")
    }
    unregistered = defined - set(OPTIMIZER_NAMES)
    assert not unregistered, f"declare these with @optimizer: {sorted(unregistered)}"
    unexported = set(OPTIMIZER_NAMES) - set(gradtx.__all__)
    assert not unexported, f"add to __all__ in gradtx/__init__.py: {sorted(unexported)}"
    missing = set(OPTIMIZER_NAMES) - {c.name for c in REGISTRY}
    assert not missing, f"add a case to tests/registry.py for: {sorted(missing)}"
    # a module that gradtx/__init__.py does not import never registers its optimizer
    unimported = {c.name for c in REGISTRY} - set(OPTIMIZER_NAMES)
    assert not unimported, f"import and re-export in gradtx/__init__.py: {sorted(unimported)}"
    assert len(set(IDS)) == len(IDS), "two cases of tests/registry.py share an id"


# --------------------------------------------------------------- convergence


def _quadratic(p):
    x = p["x"].astype(jnp.float32)
    return 0.5 * (x[0] ** 2 + 4.0 * x[1] ** 2)


def _rosenbrock(p):
    # b = 10: the same curved valley as b = 100, reachable in a few hundred steps.
    x, y = p["x"][0], p["x"][1]
    return (1 - x) ** 2 + 10.0 * (y - x**2) ** 2


def _minimize(case, opt, f, x0, steps):
    params = {"x": jnp.asarray(x0, jnp.float32)}

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(f)(p), s, p, **case.keywords(f, p))
            return (gradtx.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
        return p["x"]

    return run(params)


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_converges(case):
    x = _minimize(case, case.make(case.lr), _quadratic, [1.5, -1.0], case.steps)
    assert float(jnp.linalg.norm(x)) < 1e-3, x
    x = _minimize(case, case.make(case.rosen_lr), _rosenbrock, [-0.5, 0.5], case.steps)
    assert float(jnp.linalg.norm(x - 1.0)) < case.rosen_tol, x


# ------------------------------------------------------------------- jit/eager


WRAPPERS = {
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(0.1), 3),
    "average_params": lambda: gradtx.average_params(gradtx.sgd(0.1), method="swa"),
    "reduce_on_plateau": lambda: gradtx.chain(gradtx.adam(0.1), gradtx.reduce_on_plateau()),
    "accumulate_gradients": lambda: gradtx.accumulate_gradients(gradtx.rprop(0.1), 2),
    "track_norms": lambda: gradtx.track_norms(gradtx.adam(0.1)),
    "flatten": lambda: gradtx.flatten(gradtx.schedule_free_adamw(0.1)),
    "masked": lambda: gradtx.masked(gradtx.schedule_free_sgd(0.1), {"w": True, "b": False}),
    "partition": lambda: gradtx.partition(
        {"a": gradtx.dowg(), "b": gradtx.prodigy()}, {"w": "a", "b": "b"}
    ),
    "chain": lambda: gradtx.chain(gradtx.lookahead(gradtx.sgd(0.1)), gradtx.scale(1.0)),
}


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrapped_states_can_be_donated_with_the_params(name):
    opt = WRAPPERS[name]()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    params = _params()
    state = opt.init(params)
    for g in _grads(2):
        params, state = step(params, state, g)


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_an_eager_update_returns_no_state_buffer_as_the_updates(case):
    """Eagerly, a transform may return its state's own array as the updates (a chain
    ending in momentum: LARS); donating the updates to a jitted apply then deleted the
    state's buffer before the next update."""
    opt = case.make(case.lr)
    apply = jax.jit(gradtx.apply_updates, donate_argnums=(1,))
    params = _params()
    state = opt.init(params)
    update = case.update(opt)
    for g in _grads(2):
        updates, state = update(g, state, params)
        held = {id(x) for x in jax.tree.leaves(updates)}
        assert not [x for x in jax.tree.leaves(state) if id(x) in held]
        params = apply(params, updates)


# ------------------------------------------------------------ state and dtypes


def _with_weak(tree, value):
    """``tree`` with a weak-typed scalar leaf, as a Python float in the params gives."""
    return {**tree, "s": jnp.asarray(value)}


def _typed(tree):
    return jax.tree.structure(tree), [
        (jnp.result_type(x), x.weak_type) for x in jax.tree.leaves(tree)
    ]


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_state_type_stable_with_weak_typed_params(case):
    """An update must not turn a state leaf made from weak-typed params strong (or the
    reverse): the state's type would change after one step, and a jitted step retrace."""
    opt = case.make(case.lr)
    params = _with_weak(_params(), 0.5)
    assert params["s"].weak_type
    state = opt.init(params)
    before = _typed(state)
    update = jax.jit(case.update(opt))
    for g in _grads(2):
        _, state = update(_with_weak(g, -0.25), state, params)
        assert _typed(state) == before


# ------------------------------------------------------------ one program


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_same_structure_same_program(case):
    a, b = case.make(case.lr), case.make(case.lr * 0.37)
    params, grads = _params(), _grads(1)[0]
    jaxpr_a = jax.make_jaxpr(case.update(a))(grads, a.init(params), params)
    jaxpr_b = jax.make_jaxpr(case.update(b))(grads, b.init(params), params)
    assert str(jaxpr_a) == str(jaxpr_b)


# ------------------------------------------------------------ retracing, vmap


def _close_states(s_eager, s_jit):
    def close(path, a, b):
        # A line search's errors are differences of O(1) losses, clipped at 0: their
        # absolute rounding is the loss's (float32: ~2e-7), whatever their own size.
        loose = jax.tree_util.keystr(path).endswith(("decrease_error", "curvature_error"))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 if loose else 1e-7)

    jax.tree_util.tree_map_with_path(close, s_eager, s_jit)


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_one_program_serves_every_learning_rate_and_vmap_equals_separate_runs(case):
    """Hyperparameters are data: separate runs at three learning rates, then a
    ``set_hyperparams`` mid-run, are one trace and one compile of a jitted step, which
    keeps the float32 types; a vmapped step over the three rates (states set under
    vmap) is compiled once and gives the same params.  The jitted step takes its state
    donated and equals the eager one (one compile serves both checks: CI time)."""
    rates = [case.lr * 0.5, case.lr, case.lr * 2.0]
    opt = case.make(case.lr)
    update = case.update(opt)
    params, grads = _params(), _grads(4)
    traces = []

    compiled = []

    # Donated, every state buffer must be its own: not another leaf's, not a param's.
    @functools.partial(jax.jit, donate_argnums=1)
    def stepped(params, state, g):
        traces.append(1)  # Python side effect: runs once per trace
        u, state = update(g, state, params)
        return u, gradtx.apply_updates(params, u), state

    def one(params, state, g):
        # compiles counted too: an input placed differently compiles again, no retrace
        with xla_compiles() as seen:
            out = stepped(params, state, g)
        compiled.extend(seen)
        return out

    # A state that keeps the gradient (adan) hands it to the next, donated, step: each
    # run takes fresh gradients, of the same values.
    # Eager steps compile nothing after the first two (the second settles the state's
    # placement): a conditional or loop whose body is a new function at each update was
    # traced and compiled again at every eager step.  A case that needs the loss gets a
    # new objective per step in `update`, so it is counted with one fixed objective.
    first, rest = _grads(4)[:2], _grads(4)[2:]
    if case.needs:

        def counted(g, state, params):
            return opt.update(g, state, params, **case.keywords(_fixed_objective, params))

        q, s_q = _run(opt, params, first, counted)
        with xla_compiles() as seen:
            _run(opt, q, rest, counted, s_q)
        assert seen == [], f"{len(seen)} compiles in two eager steps"
    eager, s_eager = _run(opt, params, first, update)
    with xla_compiles() as seen:
        eager, s_eager = _run(opt, eager, rest, update, s_eager)
    assert case.needs or seen == [], f"{len(seen)} compiles in two eager steps"
    p, state = params, opt.init(params)
    for g in _grads(4):
        _, p, state = one(p, state, g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), eager, p)
    _close_states(s_eager, state)
    # so must those of a state an eager update returned (rprop's kept its rate twice)
    one(eager, s_eager, _grads(1)[0])

    alone = []
    for lr in rates:
        p, state = params, case.make(lr).init(params)
        before = signature(state)
        for g in _grads(4):
            u, p, state = one(p, state, g)
            assert_types_kept(before, state, u, p, jnp.float32)
        alone.append(p)
    state = gradtx.set_hyperparams(state, {case.lr_key: case.lr / 3})
    u, p, state = one(p, state, _grads(1)[0])
    assert_types_kept(before, state, u, p, jnp.float32)
    assert len(traces) == 1 and len(compiled) == 1, (len(traces), len(compiled))
    np.testing.assert_allclose(gradtx.get_hyperparams(state)[case.lr_key], case.lr / 3, rtol=1e-6)

    def init(lr):
        return gradtx.set_hyperparams(opt.init(params), {case.lr_key: lr})

    states = jax.vmap(init)(jnp.asarray(rates, jnp.float32))
    batched = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
    step = jax.jit(jax.vmap(update, in_axes=(None, 0, 0)))
    compiled = []
    for g in grads:
        with xla_compiles() as seen:
            u, states = step(g, states, batched)
        compiled.extend(seen)
        batched = gradtx.apply_updates(batched, u)
    assert len(compiled) == 1, len(compiled)  # states set under vmap: still one compile
    for i, p in enumerate(alone):
        for k in params:
            np.testing.assert_allclose(batched[k][i], p[k], rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------- sharding

_SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import gradtx
    from tests.registry import REGISTRY

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    assert jax.device_count() == 8, jax.devices()
    bad = []

    def check(label, state, row, rep):
        for leaf in jax.tree.leaves(state):
            want = {(8, 4): row, (3,): rep}.get(leaf.shape)
            if want is not None and not leaf.sharding.is_equivalent_to(want, leaf.ndim):
                bad.append(f"{label}: {leaf.shape} {leaf.sharding}")

    # Auto mesh: eager init copies each param's sharding; jitted updates keep it.
    # Explicit mesh: shardings are part of the types, so jit(init) follows too.
    for kind, jit_init in [(AxisType.Auto, False), (AxisType.Explicit, True)]:
        mesh = jax.make_mesh((8,), ("d",), axis_types=(kind,))
        with jax.set_mesh(mesh):
            row, rep = NamedSharding(mesh, P("d", None)), NamedSharding(mesh, P())
            params = {
                "w": jax.device_put(jnp.arange(32.0).reshape(8, 4) / 32, row),
                "b": jax.device_put(jnp.ones(3), rep),
            }
            grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
            opts = [case.make(case.lr) for case in REGISTRY]
            updates = [case.update(opt) for case, opt in zip(REGISTRY, opts)]
            # Every optimizer's step in one program: one compile, not one per optimizer.
            if jit_init:  # init, then an update of its state

                def steps(p, g):
                    states = [opt.init(p) for opt in opts]
                    return states, [u(g, s, p)[1] for u, s in zip(updates, states)]

                states, afters = jax.jit(steps)(params, grads)
            else:
                states = [opt.init(params) for opt in opts]

                def steps(states, p, g):
                    return [u(g, s, p)[1] for u, s in zip(updates, states)]

                afters = jax.jit(steps)(states, params, grads)
            for case, state, after in zip(REGISTRY, states, afters):
                check(f"{case.id} {kind} init", state, row, rep)
                check(f"{case.id} {kind} update", after, row, rep)
    # set_hyperparams outside the mesh context keeps the stored value's placement,
    # so the jitted step is not compiled again.
    mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    params = {"w": jax.device_put(jnp.ones((8, 4)), NamedSharding(mesh, P("d", None)))}
    opt, traces = gradtx.adam(1e-3), []
    with jax.set_mesh(mesh):
        state = opt.init(params)

    @jax.jit
    def step(p, s):
        traces.append(1)
        u, s = opt.update(jax.tree.map(jnp.ones_like, p), s, p)
        return gradtx.apply_updates(p, u), s

    params, state = step(params, state)
    state = gradtx.set_hyperparams(state, learning_rate=1e-4)
    params, state = step(params, state)
    if len(traces) != 1:
        bad.append(f"set_hyperparams outside the mesh retraced: {len(traces)} traces")
    print(json.dumps(bad))
    """
)


def test_state_follows_param_sharding_on_8_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"  # after the conftest's
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    bad = json.loads(out.stdout.strip().splitlines()[-1])
    assert bad == [], "\n".join(bad)
