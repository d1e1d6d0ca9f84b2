"""optax's names for torch-named numbers (gradtx/optimizers/_aliases.py)."""

import jax.numpy as jnp
import numpy as np

import gradtx


def test_an_int_given_under_optax_name_is_not_taken_for_the_default():
    # 0 compared with the default 0.95 in int precision was 0 == 0: "not given".
    state = gradtx.muon(0.01, beta=0, convention="optax").init({"w": jnp.ones((2, 3))})
    assert float(gradtx.get_hyperparams(state)["momentum"]) == 0.0
    state = gradtx.adafactor(decay_rate=1, convention="optax").init({"w": jnp.ones((2, 3))})
    assert float(gradtx.get_hyperparams(state)["beta2_decay"]) == -1.0


def test_a_float32_default_given_under_optax_name_is_the_default():
    # float32(0.8) is not the float 0.8, but it is the default in its own precision.
    opt = gradtx.adafactor(decay_rate=np.float32(0.8), beta2_decay=-0.5, convention="optax")
    state = opt.init({"w": jnp.ones((2, 3))})
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["beta2_decay"], -0.5)
