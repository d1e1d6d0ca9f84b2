"""Every named optimizer in gradtx, with small settings for the contract tests.

One ``case(...)`` line per optimizer (or per variant worth covering).  A case
builds its optimizer from a learning rate: ``case.make(lr)``.  By default that
is ``gradtx.<name>(lr, **kwargs)``; pass ``make=`` for wrappers such as
``lookahead`` whose first argument is another optimizer.

``OPTIMIZER_NAMES`` are the names in gradtx's own registry (``gradtx._registry``,
filled by the ``@optimizer`` decorator); ``tests/test_contract.py`` checks that
every public factory in ``gradtx.optimizers`` is registered and that every
registered name has at least one case here.  The contract, error, dtype, Flax
and interop tests all iterate over these cases, so adding an optimizer = its
decorator + one ``case`` line here.

An optimizer whose ``update`` needs more than ``(grads, state, params)``
(L-BFGS evaluates the loss: ``value=`` and ``value_fn=``; MoMo and Polyak SGD
take ``value=``; Sophia ``obj_fn=``; SAM's opaque mode ``grad_fn=``) says so
with ``needs``; the tests then call ``case.update(opt)`` (gradients without an
objective: it builds ``local_objective``) or pass ``case.keywords(loss, params)``
(an objective at hand), and every other case runs exactly as before.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import gradtx
from gradtx._registry import OPTIMIZERS


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer configuration under test.

    Attributes:
      id: pytest id (``name`` or ``name-variant``).
      name: the public factory in ``gradtx``.
      make: learning rate -> optimizer.
      lr: learning rate for the quadratic.
      rosen_lr: learning rate for the (mild) Rosenbrock function.
      steps: optimisation steps for the convergence tests.
      rosen_tol: distance to the Rosenbrock minimum that counts as converged.
      complex_ok: complex params are supported (conjugate-gradient convention).
      lr_key: the ``set_hyperparams`` key of the learning rate.
      per_leaf: a step depends on each leaf's shape (a norm per leaf, a noise draw
        per leaf), not only on each coordinate: a scalar leaf does not move like an
        element of a vector, and ``gradtx.flatten`` refuses it.
      needs: keywords ``update`` needs besides grads, state and params:
        ``"value"`` (the loss at params), ``"value_fn"`` and ``"obj_fn"``
        (params -> loss), ``"grad_fn"`` ((params, i) -> gradient).
      moves_low_precision_params: ``False`` for learning-rate-free methods that
        grow their step from the params' own movement (Prodigy, DoG, Mechanic):
        their first steps, about 1e-6 of the gradient, are below half an ulp of
        bfloat16 and float16 params, so those params never move (optax's do not
        either); such methods need float32 params (docs/errors.md).  D-Adapt
        grows its estimate from its own sums and descends.
      leafwise: each leaf's update depends on that leaf alone, so regimes
        placed in different leaves do not meet (False for L-BFGS, whose inner
        products span all leaves).
    """

    id: str
    name: str
    make: Callable[[float], Any]
    lr: float
    rosen_lr: float
    steps: int = 300
    rosen_tol: float = 1e-2
    complex_ok: bool = False
    lr_key: str = "learning_rate"
    per_leaf: bool = False
    needs: tuple[str, ...] = ()
    moves_low_precision_params: bool = True
    leafwise: bool = True

    def keywords(self, loss_fn: Callable, params: Any) -> dict[str, Any]:
        """The keywords in ``needs``, for the objective ``loss_fn`` at ``params``."""
        made = {
            "value": lambda: loss_fn(params),
            "value_fn": lambda: loss_fn,
            "obj_fn": lambda: loss_fn,
            "grad_fn": lambda: lambda p, i: jax.grad(loss_fn)(p),
        }
        return {k: made[k]() for k in self.needs}

    def update(self, opt: Any) -> Callable:
        """``opt.update`` for tests that have gradients but no objective.

        A case with ``needs`` gets, at each call, the keywords of
        ``local_objective(grads, params)``: the objective whose gradient at
        the params is the given gradient.  Without ``needs`` this is
        ``opt.update`` itself.
        """
        if not self.needs:
            return opt.update

        def update(grads, state, params=None, **extra):
            loss = local_objective(grads, params)
            return opt.update(grads, state, params, **extra, **self.keywords(loss, params))

        return update


def local_objective(grads: Any, params: Any) -> Callable[[Any], jax.Array]:
    """``q -> |q - p + g|² / 2`` over the leaves: its gradient at ``p`` is ``g``.

    The objective of a test that has gradients but no loss: its Hessian is the
    identity and its value is non-negative (``|g|²/2`` at ``p``), as Polyak-type
    steps (MoMo) with a lower bound of 0 expect.  Computed in the widest of the
    leaves' dtypes (at least float32), so trees of mixed dtypes sum under strict
    promotion.
    """
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(params)]
    with jax.numpy_dtype_promotion("standard"):
        dtype = functools.reduce(jnp.promote_types, [x.dtype for x in leaves], jnp.float32)

    def loss(q):
        total = jnp.zeros([], dtype)
        for g, p, x in zip(jax.tree.leaves(grads), leaves, jax.tree.leaves(q), strict=True):
            total = total + 0.5 * jnp.sum(
                jnp.abs((x - p).astype(dtype) + jnp.asarray(g).astype(dtype)) ** 2
            )
        return total

    return loss


def signature(tree: Any) -> tuple[Any, list[tuple[Any, Any]]]:
    """A tree's structure with each leaf's shape and dtype: what a jitted step keys on."""
    return jax.tree.structure(tree), [
        (jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)
    ]


def assert_types_kept(before: Any, state: Any, updates: Any, params: Any, dtype: Any) -> None:
    """After a step: the state's ``signature`` is still ``before``, the updates and the
    updated params are of the params' ``dtype`` and finite, and every floating
    hyperparameter is at JAX's default float precision (never the params' dtype)."""
    assert signature(state) == before
    assert all(x.dtype == dtype for x in jax.tree.leaves(updates))
    assert all(x.dtype == dtype for x in jax.tree.leaves(params))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    for value in gradtx.get_hyperparams(state).values():
        if jnp.issubdtype(value.dtype, jnp.floating):
            assert value.dtype == gradtx._base.float_dtype()


def case(name, *, lr, rosen_lr, variant=None, make=None, **kwargs) -> Case:
    """A registry entry; ``kwargs`` go to ``gradtx.<name>`` after the learning rate."""
    extra = {
        k: kwargs.pop(k)
        for k in ("steps", "rosen_tol", "complex_ok", "lr_key", "per_leaf", "needs", "leafwise")
        + ("moves_low_precision_params",)
        if k in kwargs
    }
    if make is None:

        def make(learning_rate, _name=name, _kwargs=kwargs):
            return getattr(gradtx, _name)(learning_rate, **_kwargs)

    ident = name if variant is None else f"{name}-{variant}"
    return Case(ident, name, make, lr, rosen_lr, **extra)


def one_example(opt: Any) -> Any:
    """``opt``, which takes per-example gradients (DP-SGD), fed a batch of one example:
    the gradient gains a leading axis of length 1."""

    def update(updates, state, params=None, **extra):
        return opt.update(
            jax.tree.map(lambda u: jnp.asarray(u)[None], updates), state, params, **extra
        )

    return type(opt)(opt.init, update)


OPTIMIZER_NAMES = tuple(sorted(OPTIMIZERS))
LOSS = ("value", "value_fn")


def decaying(name, steps, **kwargs):
    """``case`` settings for an optimizer run on ``cosine_decay(lr, steps, alpha=1e-3)``.

    Sign and layer-normalised steps have a length ~η whatever the gradient, so with
    a constant η they end in an oscillation of that size around the minimum; a
    decaying η converges.  (Fromage's steps are relative to ``‖θ‖``: it reaches the
    quadratic's minimum at the origin only as fast as ``exp(-Σ η)``.)  The cosine
    ends at ``1e-3 · lr``, not 0 (the saturation test needs a step at int32's
    maximum count), and every value scales with ``lr``: the vmap test sets
    ``learning_rate.init_value`` and compares with ``make(lr)``, and ``make(0)``
    must not move.
    """

    def make(learning_rate):
        schedule = gradtx.schedules.cosine_decay(learning_rate, steps, alpha=1e-3)
        return getattr(gradtx, name)(schedule, **kwargs)

    return dict(make=make, lr_key="learning_rate.init_value", steps=steps)


REGISTRY = [
    case("sgd", lr=0.1, rosen_lr=0.015, steps=1000, complex_ok=True),
    case("sgd", variant="momentum", lr=0.05, rosen_lr=0.005, momentum=0.9, complex_ok=True),
    case(
        "sgd",
        variant="nesterov-l2",
        lr=0.05,
        rosen_lr=0.005,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        complex_ok=True,
    ),
    case(
        "sgd",
        variant="dampening",
        lr=0.05,
        rosen_lr=0.02,
        momentum=0.9,
        dampening=0.5,
        complex_ok=True,
    ),
    case("sgdw", lr=0.05, rosen_lr=0.005, momentum=0.9, weight_decay=1e-4, complex_ok=True),
    case("adam", lr=0.05, rosen_lr=0.04, complex_ok=True),
    case("adam", variant="l2", lr=0.05, rosen_lr=0.04, weight_decay=1e-4, complex_ok=True),
    case("amsgrad", lr=0.05, rosen_lr=0.04, complex_ok=True),
    case("adamw", lr=0.05, rosen_lr=0.04, weight_decay=1e-4, complex_ok=True),
    case("adagrad", lr=0.5, rosen_lr=0.25, steps=1500, complex_ok=True),
    case("adamax", lr=0.05, rosen_lr=0.05, steps=1000, complex_ok=True),
    case("adamaxw", lr=0.05, rosen_lr=0.05, steps=1000, weight_decay=1e-4, complex_ok=True),
    # torch's relative step min(lr, 1/sqrt(t)) shrinks: it creeps along the valley (0.02 at 1500).
    case("adafactor", lr=0.1, rosen_lr=0.1, steps=1500, rosen_tol=0.05, per_leaf=True),
    # torch's rule takes matrices only; the contract's params include a vector (and its
    # convergence problems are 2-vectors), which optax's rule gives to its AdamW.
    case("muon", variant="optax", lr=0.05, rosen_lr=0.05, convention="optax", per_leaf=True),
    case("rmsprop", lr=0.01, rosen_lr=0.0025, steps=1500, complex_ok=True),
    case(
        "rmsprop",
        variant="centered-momentum",
        lr=0.01,
        rosen_lr=0.005,
        centered=True,
        momentum=0.9,
        complex_ok=True,
    ),
    # AdaDelta's step is the RMS of its own past steps: it hovers in the valley.  At
    # lr 1 (its default) its first steps (~sqrt(eps)) are not lost below half a
    # bfloat16 ulp of the params, as they are at lr 0.1.
    case(
        "adadelta",
        lr=1.0,
        rosen_lr=0.1,
        steps=3000,
        rosen_tol=0.1,
        rho=0.95,
        eps=1e-5,
        complex_ok=True,
    ),
    case("nadam", lr=0.05, rosen_lr=0.0125, steps=1500, complex_ok=True),
    case(
        "nadam",
        variant="decoupled",
        lr=0.05,
        rosen_lr=0.0125,
        steps=1500,
        weight_decay=1e-4,
        decoupled_weight_decay=True,
        complex_ok=True,
    ),
    case("radam", lr=0.05, rosen_lr=0.05, steps=1500, complex_ok=True),
    case(
        "lookahead",
        variant="sgd",
        lr=0.05,
        rosen_lr=0.0125,
        make=lambda lr: gradtx.lookahead(gradtx.sgd(lr, momentum=0.9), sync_period=5),
        complex_ok=True,
    ),
    case("adabound", lr=0.05, rosen_lr=0.1, final_lr=0.1, base_lr=0.05, complex_ok=True),
    case("amsbound", lr=0.05, rosen_lr=0.1, final_lr=0.1, base_lr=0.05, complex_ok=True),
    case("swats", lr=0.05, rosen_lr=0.1, complex_ok=True),
    case("ranger", lr=0.05, rosen_lr=0.05, steps=1500, complex_ok=True),
    case("rprop", lr=0.01, rosen_lr=0.01, complex_ok=True),
    case("asgd", lr=0.1, rosen_lr=0.015, steps=1000, complex_ok=True),
    case("sparse_adam", lr=0.05, rosen_lr=0.04, complex_ok=True),
    # optax-only optimizers (issue 17).  Sign and layer-normalised steps have length
    # ~η: they run on a decaying learning rate (``decaying`` above).  Sign descent
    # zigzags along the Rosenbrock valley (its steps are diagonal): small η, 2000 steps.
    case("sign_sgd", lr=0.05, rosen_lr=0.005, complex_ok=True, **decaying("sign_sgd", 2000)),
    case("signum", lr=0.05, rosen_lr=0.05, complex_ok=True, **decaying("signum", 1000)),
    case("lion", lr=0.05, rosen_lr=0.05, complex_ok=True, **decaying("lion", 1000)),
    case(
        "novograd",
        lr=0.05,
        rosen_lr=0.01,
        complex_ok=True,
        per_leaf=True,
        **decaying("novograd", 1000),
    ),
    case(
        "fromage", lr=0.1, rosen_lr=0.1, complex_ok=True, per_leaf=True, **decaying("fromage", 1000)
    ),
    case("adabelief", lr=0.05, rosen_lr=0.04, complex_ok=True),
    case("adabelief", variant="nesterov", lr=0.05, rosen_lr=0.04, nesterov=True, complex_ok=True),
    case("yogi", lr=0.05, rosen_lr=0.04, complex_ok=True),
    case("adan", lr=0.05, rosen_lr=0.04, steps=1000, weight_decay=1e-4, complex_ok=True),
    case("optimistic_gradient_descent", lr=0.1, rosen_lr=0.006, steps=2000, complex_ok=True),
    case("optimistic_adam", lr=0.05, rosen_lr=0.04, complex_ok=True),
    case("optimistic_adam_v2", lr=0.05, rosen_lr=0.04, complex_ok=True),
    # The default noise (variance 0.01 / t^0.55) leaves the quadratic's iterate ~4e-3
    # from the minimum after 1000 steps, above the contract's 1e-3: a smaller eta here.
    case("noisy_sgd", lr=0.1, rosen_lr=0.015, steps=1000, eta=1e-6, complex_ok=True, per_leaf=True),
    # One update is torch's step(closure): up to max_iter iterations, each evaluating the loss.
    case("lbfgs", lr=1.0, rosen_lr=0.5, steps=20, max_iter=5, needs=LOSS, leafwise=False),
    case(
        "lbfgs",
        variant="strong-wolfe",
        lr=1.0,
        rosen_lr=1.0,
        steps=10,
        history_size=4,
        line_search_fn="strong_wolfe",
        needs=LOSS,
        leafwise=False,
    ),
    # optax's rule: one iteration per update, its zoom line search (optax.lbfgs()).
    case(
        "lbfgs",
        variant="optax",
        lr=1.0,
        rosen_lr=1.0,
        steps=30,
        history_size=10,
        line_search_fn="strong_wolfe",
        convention="optax",
        needs=LOSS,
        leafwise=False,
        complex_ok=True,
    ),
    # Schedule-free: the params are the interpolation y (the average is
    # schedule_free_eval_params'), which converges too.
    case("schedule_free_adamw", lr=0.1, rosen_lr=0.05, steps=1000),
    case(
        "schedule_free_adamw",
        variant="warmup-decay-f32",
        lr=0.1,
        rosen_lr=0.05,
        steps=1500,
        warmup_steps=20,
        weight_decay=1e-4,
        state_dtype=jnp.float32,
    ),
    case("schedule_free_sgd", lr=0.1, rosen_lr=0.1, steps=1000),
    # Learning-rate-free: the learning rate is a multiplier (1 by default).
    case("prodigy", lr=1.0, rosen_lr=1.0, moves_low_precision_params=False),
    case("dadapt_adamw", lr=0.5, rosen_lr=0.5),
    case("dog", lr=1.0, rosen_lr=1.0, steps=1500, moves_low_precision_params=False),
    case("dowg", lr=1.0, rosen_lr=1.0, steps=1500),
    # COCOB's bets creep along the valley: a smaller alpha and more steps.
    case("cocob", lr=1.0, rosen_lr=1.0, steps=4000, alpha=10.0),
    # Mechanic's learned scale keeps growing on a noiseless problem: it circles
    # the minimum and comes down the valley slowly.  named_chain keeps Adam's
    # eps apart from Mechanic's own eps in the hyperparameters' names.
    case(
        "mechanize",
        variant="adam",
        lr=1.0,
        rosen_lr=1.0,
        steps=2500,
        rosen_tol=0.1,
        moves_low_precision_params=False,
        make=lambda lr: gradtx.mechanize(gradtx.named_chain(("adam", gradtx.adam(lr)))),
    ),
    case("momo", lr=1.0, rosen_lr=1.0, needs=("value",)),
    case("momo_adam", lr=0.1, rosen_lr=0.1, needs=("value",)),
    # The trust ratio makes each step η‖θ‖ long: it hovers within ~η of the minimum.
    case(
        "lamb",
        lr=0.05,
        rosen_lr=0.01,
        steps=1000,
        rosen_tol=0.05,
        weight_decay=1e-4,
        per_leaf=True,
    ),
    case(
        "lars",
        lr=0.05,
        rosen_lr=0.003,
        steps=1000,
        trust_coefficient=1.0,
        weight_decay=1e-4,
        per_leaf=True,
    ),
    case("sm3", lr=0.3, rosen_lr=0.15, steps=1000, per_leaf=True),
    case("adopt", lr=0.03, rosen_lr=0.02, steps=1500, b2=0.99),
    case("acprop", lr=0.03, rosen_lr=0.01, steps=1000),
    case("ademamix", lr=0.03, rosen_lr=0.03, steps=1000, b3=0.99),
    # at rosen_lr=0.01 it hovers 0.002-0.04 from the minimum, where it ends depending on
    # float32 rounding; at 0.005 it settles (0.001-0.002 in float32 and float64)
    case("simplified_ademamix", lr=0.01, rosen_lr=0.005, steps=1500, b1=0.9, alpha=1.0),
    # eps is added to the learning rate (authors' code, optax): a tiny one keeps lr = 0 still.
    case("madgrad", lr=0.05, rosen_lr=0.05, steps=1000, eps=1e-30),
    case("polyak_sgd", lr=0.5, rosen_lr=0.5, lr_key="max_learning_rate", needs=("value",)),
    case(
        "sam",
        variant="opaque-sgd",
        lr=0.1,
        rosen_lr=0.015,
        steps=1000,
        make=lambda lr: gradtx.sam(
            gradtx.sgd(lr),
            gradtx.chain(gradtx.normalize(), gradtx.scale(-1e-3)),
            opaque_mode=True,
        ),
        needs=("grad_fn",),
        per_leaf=True,
    ),
    case("sophia", lr=0.01, rosen_lr=0.01, steps=1000, needs=("obj_fn",), per_leaf=True),
    case("galore", lr=0.05, rosen_lr=0.04, rank=1, update_proj_gap=5, per_leaf=True),
    # Per-example gradients, one example per step; no noise and a clip above every
    # gradient, so the contract's convergence holds (tests/reference/test_privacy.py
    # checks noise and clipping against optax).
    case(
        "dpsgd",
        lr=0.1,
        rosen_lr=0.006,
        steps=2000,
        make=lambda lr: one_example(gradtx.dpsgd(lr, 1e6, 0.0, seed=0, momentum=0.5)),
        per_leaf=True,
    ),
]

IDS = [c.id for c in REGISTRY]
