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

An optimizer whose ``update`` needs more than the gradient (the loss ``value``
for Polyak's step, the loss function ``obj_fn`` for Sophia's Hessian estimate,
``grad_fn`` for SAM's opaque mode) names those keywords in its case
(``extra_args``).  The tests call ``update_fn(case, opt, loss)`` instead of
``opt.update``: it builds them from the test's objective, or, where a test
only has a gradient ``g`` at params ``p``, from ``local_objective(p, g)``,
whose gradient at ``p`` is ``g``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import gradtx
from gradtx._base import float_dtype
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
      extra_args: keywords ``update`` needs besides the gradient (``EXTRA_ARGS``).
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
    extra_args: tuple[str, ...] = ()


# How each extra keyword is made from the objective ``loss`` (params -> scalar) at ``params``.
EXTRA_ARGS: dict[str, Callable[[Callable, Any], Any]] = {
    "value": lambda loss, params: loss(params),
    "obj_fn": lambda loss, params: loss,
    "grad_fn": lambda loss, params: lambda p, i: jax.grad(loss)(p),
}


def local_objective(params: Any, grads: Any) -> Callable[[Any], jax.Array]:
    """``q -> ½‖q - params + grads‖²``: its gradient at ``params`` is ``grads``, its value
    there ``½‖grads‖²`` (≥ 0, minimum 0), its Hessian the identity.  The objective behind a
    bare gradient, for the extra keywords of a test that has no loss of its own."""

    def loss(q):
        terms = jax.tree.map(lambda x, p, g: x - p + g, q, params, grads)
        total = jnp.zeros([], float_dtype())
        for leaf in jax.tree.leaves(terms):
            total = total + 0.5 * jnp.sum(jnp.real(leaf * jnp.conj(leaf))).astype(float_dtype())
        return total

    return loss


def update_fn(case: Case, opt: Any, loss: Callable | None = None) -> Callable:
    """``opt.update`` with the extra keywords ``case`` needs, made from ``loss`` (or, without
    one, from ``local_objective`` of each call's params and gradient)."""
    if not case.extra_args:
        return opt.update

    def update(grads, state, params=None):
        objective = loss if loss is not None else local_objective(params, grads)
        extra = {k: EXTRA_ARGS[k](objective, params) for k in case.extra_args}
        return opt.update(grads, state, params, **extra)

    return update


def case(name, *, lr, rosen_lr, variant=None, make=None, **kwargs) -> Case:
    """A registry entry; ``kwargs`` go to ``gradtx.<name>`` after the learning rate."""
    extra = {
        k: kwargs.pop(k)
        for k in ("steps", "rosen_tol", "complex_ok", "lr_key", "extra_args")
        if k in kwargs
    }
    if make is None:

        def make(learning_rate, _name=name, _kwargs=kwargs):
            return getattr(gradtx, _name)(learning_rate, **_kwargs)

    ident = name if variant is None else f"{name}-{variant}"
    return Case(ident, name, make, lr, rosen_lr, **extra)


OPTIMIZER_NAMES = tuple(sorted(OPTIMIZERS))

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
    # AdaDelta's step is the RMS of its own past steps: it hovers in the valley.
    case(
        "adadelta",
        lr=0.1,
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
    # The trust ratio makes each step η‖θ‖ long: it hovers within ~η of the minimum.
    case("lamb", lr=0.05, rosen_lr=0.01, steps=1000, rosen_tol=0.05, weight_decay=1e-4),
    case("lars", lr=0.05, rosen_lr=0.003, steps=1000, trust_coefficient=1.0, weight_decay=1e-4),
    case("sm3", lr=0.3, rosen_lr=0.15, steps=1000),
    case("adopt", lr=0.03, rosen_lr=0.02, steps=1500, b2=0.99),
    case("acprop", lr=0.03, rosen_lr=0.01, steps=1000),
    case("ademamix", lr=0.03, rosen_lr=0.03, steps=1000, b3=0.99),
    case("simplified_ademamix", lr=0.01, rosen_lr=0.01, steps=1500, b1=0.9, alpha=1.0),
    # eps is added to the learning rate (authors' code, optax): a tiny one keeps lr = 0 still.
    case("madgrad", lr=0.05, rosen_lr=0.05, steps=1000, eps=1e-30),
    case("polyak_sgd", lr=0.5, rosen_lr=0.5, lr_key="max_learning_rate", extra_args=("value",)),
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
        extra_args=("grad_fn",),
    ),
    case("sophia", lr=0.01, rosen_lr=0.01, steps=1000, extra_args=("obj_fn",)),
]

IDS = [c.id for c in REGISTRY]
