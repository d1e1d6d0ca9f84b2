"""``scale_by_galore``'s basis: what a non-finite gradient does to it.

The numbers against optax's GaLore are in tests/reference/test_galore.py.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A child process: LAPACK's SVD on CPU never returns for a matrix holding an inf,
# and a hung jitted call cannot be stopped from inside the test process.
PROGRAM = """
import sys
import jax, jax.numpy as jnp, numpy as np
import gradtx
jax.config.update("jax_enable_x64", sys.argv[2] == "x64")
dtype = jnp.float64 if sys.argv[2] == "x64" else jnp.float32
params = {"w": jnp.ones((3, 4), dtype)}
grads = {"w": jnp.ones((3, 4), dtype).at[0, 0].set(float(sys.argv[1]))}
tx = gradtx.galore(0.05, rank=1, update_proj_gap=5)  # svd_dtype float32: 1e200 is inf there
updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
print(bool(np.isnan(np.asarray(updates["w"])).all()))
"""


@pytest.mark.parametrize(("bad", "precision"), [("inf", "x32"), ("-inf", "x32"), ("1e200", "x64")])
def test_a_non_finite_projected_gradient_gives_a_nan_step_and_returns(bad, precision):
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, bad, precision],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]  # NaN, as other optimizers' steps go, not a hang
