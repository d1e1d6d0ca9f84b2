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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

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


def case(name, *, lr, rosen_lr, variant=None, make=None, **kwargs) -> Case:
    """A registry entry; ``kwargs`` go to ``gradtx.<name>`` after the learning rate."""
    extra = {
        k: kwargs.pop(k) for k in ("steps", "rosen_tol", "complex_ok", "lr_key") if k in kwargs
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
    # torch's relative step min(lr, 1/sqrt(t)) shrinks: it creeps along the valley (0.02 at 1500).
    case("adafactor", lr=0.1, rosen_lr=0.1, steps=1500, rosen_tol=0.05),
    # torch's rule takes matrices only; the contract's params include a vector (and its
    # convergence problems are 2-vectors), which optax's rule gives to its AdamW.
    case("muon", variant="optax", lr=0.05, rosen_lr=0.05, convention="optax"),
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
]

IDS = [c.id for c in REGISTRY]
