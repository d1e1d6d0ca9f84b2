"""Sharded training on 8 simulated CPU devices (a 4x2 data/model mesh), in a subprocess.

The worker (``_sharded_worker.py``) checks that optimizer state follows the params'
sharding (eager init, jitted steps, explicit-mode jitted init), that the numbers
equal a single-device run (float64, rel 1e-12), and that ZeRO-1 (state sharded
over "data" with ``out_shardings``) gives the same numbers with 1/8 of each
moment per device.  Run with ``explicit-transforms``, it checks the transforms that
reshape or contract leaves (flatten, dpsgd, galore) on an explicit mesh against one
device.  See docs/distributed.md.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(*args):
    env = {
        **os.environ,
        "XLA_FLAGS": os.environ["XLA_FLAGS"] + " --xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "ecosystem", "_sharded_worker.py"), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_sharded_training_on_a_data_model_mesh():
    proc = _worker()
    lines = proc.stdout.splitlines()
    names = ["adamw", "sgd-nesterov", "radam", "adabound", "amsbound", "swats", "ranger",
             "adagrad", "rmsprop", "adadelta", "nadam"]  # fmt: skip
    for name in names:
        for check in ("sharded", "zero1", "explicit init"):
            assert f"OK {check} {name}" in lines, proc.stdout
    assert lines[-1] == "ALL OK"


def test_transforms_that_reshape_or_contract_on_an_explicit_mesh():
    """flatten (leaves split off their first axis, or of several shardings), dpsgd
    (per-example gradients split along the example axis) and galore (a split axis
    merged into the matrix) raised ShardingTypeError on an AxisType.Explicit mesh;
    now each equals its unsharded run (float64, rel 1e-12) and returns updates on the
    params' shardings."""
    lines = _worker("explicit-transforms").stdout.splitlines()
    for check in (
        "flatten 65536",
        "flatten 100",
        "flatten split rows",
        "flatten outside set_mesh",
        "dpsgd",
        "galore",
    ):
        assert f"OK explicit {check}" in lines, lines
    assert lines[-1] == "ALL OK"
