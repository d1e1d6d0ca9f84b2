"""add_l2 and decoupled_weight_decay: the term, its masks, and where it enters a chain."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_both_add_weight_decay_times_params():
    params = {"w": jnp.asarray([2.0, -4.0]), "b": jnp.asarray([1.0])}
    g = {"w": jnp.asarray([0.5, 0.5]), "b": jnp.asarray([0.0])}
    for tx in (gradtx.add_l2(0.25), gradtx.decoupled_weight_decay(0.25)):
        u, _ = tx.update(g, tx.init(params), params)
        np.testing.assert_allclose(u["w"], [1.0, -0.5])
        np.testing.assert_allclose(u["b"], [0.25])


@pytest.mark.parametrize("factory", [gradtx.add_l2, gradtx.decoupled_weight_decay])
def test_masks_as_trees_prefixes_and_functions(factory):
    params = {"enc": {"w": jnp.ones(2), "b": jnp.ones(2)}, "head": jnp.ones(2)}
    zero = {"enc": {"w": jnp.zeros(2), "b": jnp.zeros(2)}, "head": jnp.zeros(2)}
    full = {"enc": {"w": True, "b": False}, "head": False}
    prefix = {"enc": {"w": True, "b": False}, "head": False}
    for tx in (
        factory(0.5, mask=full),
        factory(0.5, mask=prefix),
        factory(0.5, mask_fn=lambda p: {"enc": {"w": True, "b": False}, "head": False}),
    ):
        u, _ = tx.update(zero, tx.init(params), params)
        np.testing.assert_allclose(u["enc"]["w"], 0.5)
        np.testing.assert_allclose(u["enc"]["b"], 0.0)
        np.testing.assert_allclose(u["head"], 0.0)
    with pytest.raises(ValueError, match="give mask or mask_fn, not both"):
        factory(0.5, mask=full, mask_fn=lambda p: full)


def test_l2_enters_the_statistics_decoupled_does_not(x64):
    params = {"w": jnp.asarray([1.0, -1.0])}
    g = {"w": jnp.asarray([0.0, 0.0])}
    l2 = gradtx.adam(0.1, weight_decay=0.5)
    decoupled = gradtx.adam(0.1, weight_decay=0.5, decoupled_weight_decay=True)
    u, _ = l2.update(g, l2.init(params), params)
    # L2: the gradient is 0.5 w, Adam normalises it: a step of -lr sign(w)
    np.testing.assert_allclose(u["w"], [-0.1, 0.1], rtol=1e-6)
    u, _ = decoupled.update(g, decoupled.init(params), params)
    # decoupled: Adam sees 0 (no step), the decay is lr * 0.5 * w
    np.testing.assert_allclose(u["w"], [-0.05, 0.05], rtol=1e-12)


def test_the_decay_needs_params_and_says_so():
    tx = gradtx.add_l2(0.1)
    with pytest.raises(ValueError, match=r"^gradtx\.add_l2: update needs params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
