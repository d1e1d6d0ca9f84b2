"""The tests' compiler setting gives the numbers users get, to rounding.

``tests/conftest.py`` has XLA compile with its CPU IR emitters instead of its
default fusion emitters: a test's time is mostly XLA compiling small programs,
and the IR emitters compile them in ~60% of the time.  The two emit reductions
and multiply-adds differently, so results differ in the last bits (measured:
at most 5e-14 of a leaf's largest value over three float64 steps, Muon's
Newton-Schulz iterations the largest), far below the tests' 1e-10 tolerances
against references.  This test holds that bound: three steps of every registry
optimizer in float64, in two processes, one with each setting, every update,
param and state leaf compared.  If a JAX upgrade breaks it, drop the flag.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from tests.conftest import FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_STEPS = """
import sys
import jax, jax.numpy as jnp, numpy as np
from tests.registry import REGISTRY

jax.config.update("jax_enable_x64", True)
params = {"w": jnp.arange(32.0).reshape(8, 4) / 32 - 0.4, "b": jnp.linspace(-1.0, 2.0, 3)}
grads = jax.tree.map(lambda p: jnp.stack([jnp.sin(3 * p + k) + 0.1 * k for k in range(3)]), params)
opts = [case.make(case.lr) for case in REGISTRY]
updates = [case.update(opt) for case, opt in zip(REGISTRY, opts)]


# Every optimizer in one program, its steps a scan: one compile in all.
@jax.jit
def run(p0, gs):
    def steps(update):
        def step(carry, g):
            p, state = carry
            u, state = update(g, state, p)
            return (jax.tree.map(jnp.add, p, u), state), u

        return step

    return [jax.lax.scan(steps(update), (p0, opt.init(p0)), gs) for opt, update in zip(opts, updates)]


out = {}
for case, result in zip(REGISTRY, run(params, grads)):
    for i, leaf in enumerate(jax.tree.leaves(result)):
        out[f"{case.id}/{i}"] = np.asarray(leaf).astype(np.float64)
np.savez(sys.argv[1], **out)
"""


def _start(path, xla_flags):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env |= {"JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    return subprocess.Popen(
        [sys.executable, "-c", _STEPS, str(path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _results(proc, path):
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    with np.load(path) as data:
        return dict(data)


def test_every_optimizer_gives_the_same_numbers_to_rounding_with_the_tests_setting(tmp_path):
    paths = {"default": tmp_path / "default.npz", "tests": tmp_path / "tests.npz"}
    procs = {
        "default": _start(paths["default"], None),
        "tests": _start(paths["tests"], FAST_COMPILE),
    }
    try:  # both at once
        default, tests = (_results(procs[k], paths[k]) for k in ("default", "tests"))
    finally:
        for proc in procs.values():
            proc.kill()
    assert default.keys() == tests.keys()
    assert len({key.split("/")[0] for key in default}) > 60
    # Not bit for bit: else the flag changes nothing and should go.
    assert any(not np.array_equal(default[k], tests[k], equal_nan=True) for k in default)
    differ = []
    for key, want in default.items():
        finite, got = np.isfinite(want), tests[key]
        np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=key)
        np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=key)  # NaN, ±inf
        scale = np.max(np.abs(want[finite]), initial=1e-300)
        gap = np.max(np.abs(got[finite] - want[finite]), initial=0.0)
        if gap > 1e-12 * scale:
            differ.append(f"{key}: {gap / scale:.1e} of the leaf's scale")
    assert differ == []
