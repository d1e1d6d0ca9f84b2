"""Every registry case equals its reference in float64, step by step.

``case.reference`` (tests/registry.py) is the same optimizer with the same
settings in torch or optax; here both take three steps from the same params and
gradients in float64 and agree to 1e-10 relative after each (1e-6 for the two
references that compute in float32 under x64, said where they are declared).
Each step also keeps the state's structure, shapes and dtypes and gives float64
params and updates (float32: tests/test_contract.py; bfloat16 and float16:
tests/test_low_precision.py).  The sweeps over random hyperparameters, shapes and
options are in tests/reference/; this test makes every registry entry name a
reference it matches, so an optimizer cannot join the registry without one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx
from tests.registry import REGISTRY
from tests.registry import assert_types_kept
from tests.registry import run_reference
from tests.registry import signature

SHAPES = {"w": (3, 4), "b": (5,)}

# optax's dpsgd passes its seed on under the deprecated name (its own warning).
pytestmark = pytest.mark.filterwarnings('ignore:"seed" is deprecated:DeprecationWarning')


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(3)]
    return params, grads


@pytest.mark.parametrize("case", REGISTRY, ids=[c.id for c in REGISTRY])
def test_first_steps_equal_the_reference_in_float64(x64, torch64, case):
    params, grads = _problem()
    ref = run_reference(case, params, grads, jnp.float64, torch.float64)
    opt = case.make(case.lr)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(p)
    before = signature(state)
    update = jax.jit(case.update(opt))
    for step, (g, want) in enumerate(zip(grads, ref, strict=True)):
        u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        # and the state's structure, shapes and dtypes stay (one compile serves both)
        assert_types_kept(before, state, u, p, jnp.float64)
        for k in want:
            np.testing.assert_allclose(
                np.asarray(p[k]), want[k], rtol=case.reference.rtol, atol=1e-12,
                err_msg=f"{case.id} step {step + 1} leaf {k}",
            )  # fmt: skip
    # the reference moved the params: one that does nothing would not pass
    assert np.any(ref[-1]["w"] != params["w"]), case.id
