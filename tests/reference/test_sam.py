"""SAM against optax.contrib.sam, step by step in float64.

Both sides minimise the same loss, each taking the gradient at the params it
holds (the adversarial point during adversarial steps); in opaque mode both get
``grad_fn``.  The outer optimizer is Adam, the adversary ``normalize`` then a
step of ``rho`` (gradtx: ``scale(-rho)``; optax: ``sgd(rho)``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax_on_loss
from tests.reference.harness import mixed_loss


def _on_loss(ours, theirs, seed, **kw):
    """This file's comparisons run on the non-separable ``mixed_loss``, with only the
    keywords each test names."""
    kw.setdefault("keywords", ())
    assert_matches_optax_on_loss(ours, theirs, seed, loss=mixed_loss(seed), **kw)


def _h(seed):
    rng = np.random.default_rng(1760 + seed)
    return dict(lr=float(rng.uniform(1e-3, 0.05)), rho=float(rng.uniform(0.01, 0.2)))


def _pair(h, **kw):
    ours = gradtx.sam(
        gradtx.adam(h["lr"]), gradtx.chain(gradtx.normalize(), gradtx.scale(-h["rho"])), **kw
    )
    theirs = optax.contrib.sam(
        optax.adam(h["lr"]), optax.chain(optax.contrib.normalize(), optax.sgd(h["rho"])), **kw
    )
    return ours, theirs


@pytest.mark.parametrize("sync_period, reset_state", [(2, True), (3, False)])
@pytest.mark.parametrize("seed", [0, 1])
def test_sam_matches_optax(x64, sync_period, reset_state, seed):
    ours, theirs = _pair(_h(seed), sync_period=sync_period, reset_state=reset_state)
    _on_loss(ours, theirs, seed)


@pytest.mark.parametrize("sync_period", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_sam_opaque_mode_matches_optax(x64, sync_period, seed):
    ours, theirs = _pair(_h(seed), sync_period=sync_period, opaque_mode=True)
    _on_loss(ours, theirs, seed, keywords=("grad_fn",))


@pytest.mark.parametrize("opaque_mode", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_sam_with_a_stateful_adversary_matches_optax(x64, opaque_mode, seed):
    """An adversary with momentum: reset_state decides whether it carries over cycles."""
    h = _h(seed)
    keywords = ("grad_fn",) if opaque_mode else ()
    for reset_state in (True, False):
        kw = dict(sync_period=3, reset_state=reset_state, opaque_mode=opaque_mode)
        ours = gradtx.sam(
            gradtx.sgd(h["lr"], momentum=0.9),
            gradtx.chain(gradtx.normalize(), gradtx.sgd(h["rho"], momentum=0.5)),
            **kw,
        )
        theirs = optax.contrib.sam(
            optax.sgd(h["lr"], momentum=0.9),
            optax.chain(optax.contrib.normalize(), optax.sgd(h["rho"], momentum=0.5)),
            **kw,
        )
        _on_loss(ours, theirs, seed, keywords=keywords)


@pytest.mark.parametrize("opaque_mode", [False, True])
def test_sam_with_one_step_per_cycle_is_the_outer_optimizer(x64, opaque_mode):
    """``sync_period=1`` has no adversarial step: the outer optimizer's own steps, each
    from the params held (optax's transparent mode steps from the call before's)."""
    h = _h(0)
    ours, _ = _pair(h, sync_period=1, opaque_mode=opaque_mode)
    theirs = optax.with_extra_args_support(optax.adam(h["lr"]))
    _on_loss(ours, theirs, 0, keywords=("grad_fn",) if opaque_mode else ())


@pytest.mark.parametrize("opaque_mode", [False, True])
def test_a_reset_keeps_the_adversarys_hyperparameters_as_set(x64, opaque_mode):
    """The reset after each cycle re-initialised the adversary's state, hyperparameters
    included: a radius set by set_hyperparams went back to the built one after the
    first cycle.  Set it instead of building it, and the run is still optax's."""
    h = _h(0)
    kw = dict(sync_period=3, opaque_mode=opaque_mode)
    built = gradtx.sam(
        gradtx.sgd(h["lr"], momentum=0.9),
        gradtx.chain(gradtx.normalize(), gradtx.sgd(2 * h["rho"], momentum=0.5)),
        **kw,
    )

    def init(params):  # the adversary's sgd is the chain's member 1
        return gradtx.set_hyperparams(built.init(params), **{"1/learning_rate": h["rho"]})

    theirs = optax.contrib.sam(
        optax.sgd(h["lr"], momentum=0.9),
        optax.chain(optax.contrib.normalize(), optax.sgd(h["rho"], momentum=0.5)),
        **kw,
    )
    ours = optax.GradientTransformationExtraArgs(init, built.update)
    _on_loss(ours, theirs, 0, keywords=("grad_fn",) if opaque_mode else ())


def test_a_tuple_of_batch_axes_averages_over_all_of_them():
    # optax and jax.lax.pmean take a tuple (a mesh of several data axes); gradtx refused it
    p = {"w": jnp.array([1.0, -2.0])}
    shifts = jnp.arange(4.0).reshape(2, 2)  # one gradient per member of a 2 x 2 mesh
    mean = float(jnp.mean(shifts))

    def run(axis, shift):
        opt = gradtx.sam(
            gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True, sync_period=2, batch_axis_name=axis
        )
        grad_fn = lambda q, i: {"w": q["w"] + shift}  # noqa: E731
        return opt.update(p, opt.init(p), p, grad_fn=grad_fn)[0]["w"]  # one first gradient

    both = jax.vmap(jax.vmap(lambda s: run(("a", "b"), s), axis_name="b"), axis_name="a")(shifts)
    alone = gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True, sync_period=2)
    want = alone.update(p, alone.init(p), p, grad_fn=lambda q, i: {"w": q["w"] + mean})[0]["w"]
    for member in both.reshape(4, 2):
        np.testing.assert_allclose(member, want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"batch_axis_name=.*used in opaque mode only"):
        gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), batch_axis_name="a")


@pytest.mark.parametrize("opaque_mode", [False, True])
def test_an_optimizer_that_needs_the_loss_inside_sam_says_that_sam_withholds_it(opaque_mode):
    """sam calls its optimizers with the gradient alone (as optax's): a polyak_sgd inside
    said it needed value= when the caller had passed it, naming no sam."""
    p = {"w": jnp.array([0.3, -2.0])}
    loss = lambda q: jnp.sum((q["w"] - 1.0) ** 2)  # noqa: E731
    v, g = jax.value_and_grad(loss)(p)
    extra = {"grad_fn": lambda q, i: jax.grad(loss)(q)} if opaque_mode else {}
    for inner in (gradtx.polyak_sgd(), gradtx.momo(), gradtx.lbfgs()):
        for tx in (
            gradtx.sam(inner, gradtx.sgd(0.05), opaque_mode=opaque_mode),
            gradtx.sam(gradtx.sgd(0.1), inner, opaque_mode=opaque_mode, sync_period=2),
        ):
            with pytest.raises(ValueError, match=r"update needs .*\(gradtx\.sam calls its"):
                tx.update(g, tx.init(p), p, value=v, value_fn=loss, **extra)
    with pytest.raises(ValueError) as info:  # outside sam, the message stands alone
        gradtx.polyak_sgd().update(g, gradtx.polyak_sgd().init(p), p)
    assert "sam" not in str(info.value)
