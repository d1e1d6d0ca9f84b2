"""The benchmark script runs end to end in its quick mode and writes its table."""

import importlib.util
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name):
    """Import ``benchmarks/<name>.py`` (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_writes_the_table(tmp_path):
    bench = load_script("bench_optimizers")
    out = tmp_path / "RESULTS.md"
    rows = bench.main(
        ["--quick", "--optimizers", "adam", "--new-optimizers", "", "--rounds", "1"]
        + ["--steps", "1", "--warmup", "1", "--output", str(out)]
    )
    text = out.read_text()
    assert "| tree | optimizer | implementation | step ms |" in text
    assert "compile vs optax inject (cpu)" in text
    assert "- jax: " in text and "- cpu: " in text
    impls = {r["impl"] for r in rows}
    assert impls == {
        "optax",
        "optax inject",
        "gradtx",
        "gradtx.flatten",
        "jax no-op step",
        "torch foreach",
        "torch fused",
    }
    assert len({r["tree"] for r in rows}) == 4
    # one row per implementation, tree and optimizer, each with a positive step time
    assert len(rows) == 4 * 7 and all(r["step_ms"] > 0 for r in rows)
    jax_rows = [
        r for r in rows if r["impl"] in ("optax", "optax inject", "gradtx", "gradtx.flatten")
    ]
    assert all(r["compile_s"] > 0 and r["compiles"] == 1 for r in jax_rows)
    assert all(r["state_bytes"] > 0 for r in jax_rows)
    # the no-op step computes nothing: no compile time is reported for it
    assert all(r["compile_s"] is None for r in rows if r["impl"] == "jax no-op step")
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == json.loads(json.dumps(rows))


def test_quick_benchmark_runs_the_new_optimizers(tmp_path):
    """Further optimizers get their optax, inject and gradtx rows, and flatten only where
    allowed: the special ones (optax's adafactor needs a static argument under inject;
    schedule-free keeps the params in its state, which a donated step must not receive
    twice) and one plain one (adamax, with a flatten row)."""
    bench = load_script("bench_optimizers")
    new = "adamax,adafactor,schedule_free_adamw"
    rows = bench.main(
        ["--quick", "--trees", "resnet", "--optimizers", "adam", "--new-optimizers", new]
        + ["--rounds", "1", "--steps", "1", "--warmup", "1", "--no-torch"]
        + ["--output", str(tmp_path / "RESULTS.md")]
    )
    for name in new.split(","):
        impls = {r["impl"] for r in rows if r["optimizer"] == name}
        flatten = {"gradtx.flatten"} if bench.OPTIMIZERS[name].flatten else set()
        assert impls == {"optax", "optax inject", "gradtx", "jax no-op step"} | flatten, name


def test_one_pass_probe_runs_and_its_packed_adam_is_adam():
    out = load_script("probe_one_pass").main(["--size", "4096", "--rounds", "1"])
    assert set(out["adam_ms"]) == {"optax", "packed", "torch fused"}
    assert all(t > 0 for t in out["adam_ms"].values())
    assert out["kernels"]["packed"] < out["kernels"]["optax"]
    # the packed layout computes optax's Adam, step for step (5 steps each)
    chex.assert_trees_all_close(
        out["params"]["packed"], out["params"]["optax"], rtol=1e-5, atol=1e-6
    )


BENCH = load_script("bench_optimizers")


@pytest.mark.parametrize("name", list(BENCH.OPTIMIZERS))
def test_each_row_times_the_same_optimizer_on_both_sides(name, x64):
    """A row compares gradtx with optax only if both compute the same steps: where
    gradtx's defaults are torch's, the spec must give it optax's values (Adafactor's
    and Muon's rows timed another configuration until they did).  Three of the
    benchmark's own steps (fixed gradients, the loss keywords it passes) on a tree
    with a 4-D, a 2-D whose axes reach 128 and two small leaves."""
    bench = BENCH
    rng = np.random.default_rng(0)
    shapes = {"conv": (3, 3, 16, 160), "dense": (130, 200), "bias": (160,), "small": (4, 5)}
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    made = bench.jax_optimizers(name, flatten=False)
    out = {}
    for impl in ("optax", "gradtx"):
        tx, apply = made[impl]
        keywords = bench._keywords(name, impl)
        # optax's own code mixes Python floats with int32 counts: it runs under JAX's
        # standard promotion, gradtx under the suite's strict one
        promotion = "standard" if impl == "optax" else "strict"
        with jax.numpy_dtype_promotion(promotion):
            p, s = params, tx.init(params)
            for _ in range(3):
                u, s = tx.update(grads, s, p, **(keywords(p, grads) if keywords else {}))
                p = apply(p, u)
        out[impl] = p
    for key in shapes:  # the three steps taken, not the params they moved
        got, want = out["gradtx"][key] - params[key], out["optax"][key] - params[key]
        assert float(jnp.max(jnp.abs(got - want))) <= 1e-6 * float(jnp.max(jnp.abs(want))), key
