"""Every named optimizer in gradtx, with small settings for the contract tests.

One ``case(...)`` per optimizer (or per variant worth covering).  A case
builds its optimizer from a learning rate: ``case.make(lr)``.  By default that
is ``gradtx.<name>(lr, **kwargs)``; pass ``make=`` for wrappers such as
``lookahead`` whose first argument is another optimizer.  Each case names its
``reference``: the same optimizer and settings in torch or optax, which the
float64 and low-precision comparisons run (``run_reference``).

``OPTIMIZER_NAMES`` are the names in gradtx's own registry (``gradtx._registry``,
filled by the ``@optimizer`` decorator); ``tests/test_contract.py`` checks that
every public factory in ``gradtx.optimizers`` is registered and that every
registered name has at least one case here.  The contract, error, dtype, Flax
and interop tests all iterate over these cases, so adding an optimizer = its
decorator + one ``case`` here.

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
from typing import NamedTuple

import adabound
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytorch_optimizer
import torch
import torch_optimizer

import gradtx
from gradtx._registry import OPTIMIZERS

T = torch.optim


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
        products span all leaves, and for every optimizer with a tree-wide
        quantity: a norm, a distance, a step size, a loss ratio, SAM's
        direction, dpsgd's per-example clip, noisy_sgd's keys split per leaf).
      reference: the same optimizer with the same settings in torch
        (``torch_ref``) or optax (``optax_ref``), which ``run_reference`` runs
        (tests/test_registry_references.py in float64,
        tests/test_low_precision.py in bfloat16 and float16).
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
    reference: Reference | None = None

    def keywords(self, loss_fn: Callable, params: Any) -> dict[str, Any]:
        """The keywords in ``needs``, for the objective ``loss_fn`` at ``params``."""
        made = {
            "value": lambda: loss_fn(params),
            "value_fn": lambda: loss_fn,
            "obj_fn": lambda: loss_fn,
            # conj: descent on complex params takes the conjugate of jax.grad (as optax)
            "grad_fn": lambda: lambda p, i: jax.tree.map(jnp.conj, jax.grad(loss_fn)(p)),
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
    promotion, and a trial point wider than the params (a line search's) is taken
    as it is.
    """
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(params)]
    with jax.numpy_dtype_promotion("standard"):
        dtype = functools.reduce(jnp.promote_types, [x.dtype for x in leaves], jnp.float32)

    def loss(q):
        total = jnp.zeros([], jnp.finfo(dtype).dtype)  # real for complex leaves too
        for g, p, x in zip(jax.tree.leaves(grads), leaves, jax.tree.leaves(q), strict=True):
            total = total + 0.5 * jnp.sum(
                jnp.abs(x.astype(dtype) - p.astype(dtype) + jnp.asarray(g).astype(dtype)) ** 2
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


def case(name, *, lr, rosen_lr, reference, variant=None, make=None, **kwargs) -> Case:
    """A registry entry; ``kwargs`` go to ``gradtx.<name>`` after the learning rate.
    ``reference`` is required: every case is compared with torch or optax."""
    extra = {
        k: kwargs.pop(k)
        for k in ("steps", "rosen_tol", "complex_ok", "lr_key", "per_leaf", "needs", "leafwise")
        + ("moves_low_precision_params",)
        if k in kwargs
    }
    extra["reference"] = reference
    if make is None:

        def make(learning_rate, _name=name, _kwargs=kwargs):
            return getattr(gradtx, _name)(learning_rate, **_kwargs)

    ident = name if variant is None else f"{name}-{variant}"
    return Case(ident, name, make, lr, rosen_lr, **extra)


class Reference(NamedTuple):
    """How ``run_reference`` runs a case's reference: ``kind`` (``"torch"``,
    ``"torch-sparse"``, ``"torch-closure"``, ``"optax"``, ``"optax-float32"``),
    ``build``, and the float64 tolerance ``rtol``."""

    kind: str
    build: Callable
    rtol: float = 1e-10


def torch_ref(build: Callable, *, sparse: bool = False, closure: bool = False) -> Reference:
    """A torch reference, ``build(params, lr)``: ``sparse`` gradients (SparseAdam),
    ``closure`` (L-BFGS: its closure is ``local_objective``)."""
    return Reference("torch-sparse" if sparse else "torch-closure" if closure else "torch", build)


def optax_ref(build: Callable, *, float32: bool = False, rtol: float = 1e-10) -> Reference:
    """An optax reference, ``build(lr)``.  ``float32``: in 16-bit runs optax computes in
    float32, the params rounded to the low dtype after each step (Muon's Newton-Schulz
    iterations in bfloat16 drift by percents; gradtx iterates in float32, as for every
    statistic).  ``rtol``: where optax computes in float32 under x64 (said where used)."""
    return Reference("optax-float32" if float32 else "optax", build, rtol)


def grad_keyword(tx: Any) -> Any:
    """``tx`` given its gradient also as ``grad=`` (optax's line searches need it)."""

    def update(updates, state, params=None, **extra):
        return tx.update(updates, state, params, grad=updates, **extra)

    return optax.GradientTransformationExtraArgs(tx.init, update)


def optax_cosine(lr: float, steps: int) -> Any:
    """``decaying``'s schedule in optax."""
    return optax.cosine_decay_schedule(lr, steps, alpha=1e-3)


def run_reference(case: Case, params: dict, grads: list, jdtype: Any, tdtype: Any) -> list:
    """The reference's params after each step, as float32 (16-bit runs) or float64 NumPy
    arrays, from ``params`` and ``grads`` (dicts of NumPy arrays) in ``jdtype`` (torch:
    ``tdtype``)."""
    kind, build = case.reference.kind, case.reference.build
    wide = jnp.finfo(jdtype).bits >= 32  # float32/float64 runs compute in their own dtype
    keep = np.float64 if jnp.dtype(jdtype) == jnp.float64 else np.float32
    out = []
    if kind.startswith("torch"):
        # L-BFGS flattens the params and computes in at least float32 (its history and
        # dot products in bfloat16 are noise): in 16-bit runs the reference is torch in
        # float32 with the params rounded to the low dtype after each step, the same
        # policy.
        work = torch.float32 if kind == "torch-closure" and not wide else tdtype
        ts = {k: torch.tensor(v, dtype=work, requires_grad=True) for k, v in params.items()}
        opt = build(list(ts.values()), case.lr)
        for g in grads:
            if kind == "torch-closure":
                start = {k: t.detach().clone() for k, t in ts.items()}
                gt = {k: torch.tensor(g[k], dtype=work) for k in ts}

                def closure(start=start, gt=gt):
                    opt.zero_grad()
                    loss = sum(  # the registry's local objective
                        0.5 * ((t - start[k] + gt[k]) ** 2).sum() for k, t in ts.items()
                    )
                    loss.backward()
                    return loss

                opt.step(closure)
                with torch.no_grad():
                    for t in ts.values():
                        t.copy_(t.to(tdtype).to(work))
            else:
                for k, t in ts.items():
                    t.grad = torch.tensor(g[k], dtype=tdtype)
                    if kind == "torch-sparse":  # SparseAdam takes sparse gradients only
                        t.grad = t.grad.to_sparse()
                opt.step()
            wide_t = torch.float64 if keep is np.float64 else torch.float32
            out.append({k: t.detach().to(wide_t).numpy().copy() for k, t in ts.items()})
        return out
    tx = build(case.lr)
    work = jnp.float32 if kind == "optax-float32" and not wide else jdtype
    p = {k: jnp.asarray(v, work) for k, v in params.items()}

    @jax.jit  # one compile for all steps (optax's line searches retrace eagerly)
    def step(g, state, p):
        # the registry's local objective |q - p + g|²/2 at p, for the updates that take it
        u, state = tx.update(g, state, p, **case.keywords(local_objective(g, p), p))
        return optax.apply_updates(p, u), state

    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        state = tx.init(p)
        for g in grads:
            p, state = step({k: jnp.asarray(v, work) for k, v in g.items()}, state, p)
            p = {k: v.astype(jdtype).astype(work) for k, v in p.items()}  # the params' dtype
            out.append({k: np.asarray(v.astype(keep)) for k, v in p.items()})
    return out


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
    case(
        "sgd",
        lr=0.1,
        rosen_lr=0.015,
        steps=1000,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.SGD(ps, lr)),
    ),
    case(
        "sgd",
        variant="momentum",
        lr=0.05,
        rosen_lr=0.005,
        momentum=0.9,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.SGD(ps, lr, momentum=0.9)),
    ),
    case(
        "sgd",
        variant="nesterov-l2",
        lr=0.05,
        rosen_lr=0.005,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        complex_ok=True,
        reference=torch_ref(
            lambda ps, lr: T.SGD(ps, lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
        ),
    ),
    case(
        "sgd",
        variant="dampening",
        lr=0.05,
        rosen_lr=0.02,
        momentum=0.9,
        dampening=0.5,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.SGD(ps, lr, momentum=0.9, dampening=0.5)),
    ),
    case(
        "sgdw",
        lr=0.05,
        rosen_lr=0.005,
        momentum=0.9,
        weight_decay=1e-4,
        complex_ok=True,
        reference=torch_ref(
            lambda ps, lr: pytorch_optimizer.SGDW(ps, lr, momentum=0.9, weight_decay=1e-4)
        ),
    ),
    case(
        "adam",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Adam(ps, lr)),
    ),
    case(
        "adam",
        variant="l2",
        lr=0.05,
        rosen_lr=0.04,
        weight_decay=1e-4,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Adam(ps, lr, weight_decay=1e-4)),
    ),
    case(
        "amsgrad",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Adam(ps, lr, amsgrad=True)),
    ),
    case(
        "adamw",
        lr=0.05,
        rosen_lr=0.04,
        weight_decay=1e-4,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.AdamW(ps, lr, weight_decay=1e-4)),
    ),
    case(
        "adagrad",
        lr=0.5,
        rosen_lr=0.25,
        steps=1500,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Adagrad(ps, lr)),
    ),
    case(
        "adamax",
        lr=0.05,
        rosen_lr=0.05,
        steps=1000,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Adamax(ps, lr)),
    ),
    case(
        "adamaxw",
        lr=0.05,
        rosen_lr=0.05,
        steps=1000,
        weight_decay=1e-4,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.adamaxw(lr, weight_decay=1e-4)),
    ),
    # torch's relative step min(lr, 1/sqrt(t)) shrinks: it creeps along the valley (0.02 at 1500).
    case(
        "adafactor",
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.1,
        steps=1500,
        rosen_tol=0.05,
        per_leaf=True,
        reference=torch_ref(lambda ps, lr: T.Adafactor(ps, lr)),
    ),
    # torch's rule takes matrices only; the contract's params include a vector (and its
    # convergence problems are 2-vectors), which optax's rule gives to its AdamW.
    case(
        "muon",
        variant="optax",
        lr=0.05,
        complex_ok=True,
        rosen_lr=0.05,
        convention="optax",
        per_leaf=True,
        reference=optax_ref(
            lambda lr: optax.contrib.muon(lr, weight_decay=0.1, eps=1e-7), float32=True
        ),
    ),
    case(
        "rmsprop",
        lr=0.01,
        rosen_lr=0.0025,
        steps=1500,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.RMSprop(ps, lr)),
    ),
    case(
        "rmsprop",
        variant="centered-momentum",
        lr=0.01,
        rosen_lr=0.005,
        centered=True,
        momentum=0.9,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.RMSprop(ps, lr, centered=True, momentum=0.9)),
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
        reference=torch_ref(lambda ps, lr: T.Adadelta(ps, lr, rho=0.95, eps=1e-5)),
    ),
    case(
        "nadam",
        lr=0.05,
        rosen_lr=0.0125,
        steps=1500,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.NAdam(ps, lr)),
    ),
    case(
        "nadam",
        variant="decoupled",
        lr=0.05,
        rosen_lr=0.0125,
        steps=1500,
        weight_decay=1e-4,
        decoupled_weight_decay=True,
        complex_ok=True,
        reference=torch_ref(
            lambda ps, lr: T.NAdam(ps, lr, weight_decay=1e-4, decoupled_weight_decay=True)
        ),
    ),
    case(
        "radam",
        lr=0.05,
        rosen_lr=0.05,
        steps=1500,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.RAdam(ps, lr)),
    ),
    case(
        "lookahead",
        variant="sgd",
        lr=0.05,
        rosen_lr=0.0125,
        make=lambda lr: gradtx.lookahead(gradtx.sgd(lr, momentum=0.9), sync_period=5),
        complex_ok=True,
        reference=torch_ref(
            lambda ps, lr: pytorch_optimizer.Lookahead(T.SGD(ps, lr, momentum=0.9), k=5, alpha=0.5)
        ),
    ),
    case(
        "adabound",
        lr=0.05,
        rosen_lr=0.1,
        final_lr=0.1,
        base_lr=0.05,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: adabound.AdaBound(ps, lr, final_lr=0.1)),
    ),
    case(
        "amsbound",
        lr=0.05,
        rosen_lr=0.1,
        final_lr=0.1,
        base_lr=0.05,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: adabound.AdaBound(ps, lr, final_lr=0.1, amsbound=True)),
    ),
    case(
        "swats",
        lr=0.05,
        rosen_lr=0.1,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: torch_optimizer.SWATS(ps, lr, eps=1e-9)),
    ),
    case(
        "ranger",
        lr=0.05,
        rosen_lr=0.05,
        steps=1500,
        complex_ok=True,
        reference=torch_ref(
            lambda ps, lr: pytorch_optimizer.Ranger(ps, lr, degenerated_to_sgd=True)
        ),
    ),
    case(
        "rprop",
        lr=0.01,
        rosen_lr=0.01,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.Rprop(ps, lr)),
    ),
    case(
        "asgd",
        lr=0.1,
        rosen_lr=0.015,
        steps=1000,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.ASGD(ps, lr)),
    ),
    case(
        "sparse_adam",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=torch_ref(lambda ps, lr: T.SparseAdam(ps, lr), sparse=True),
    ),
    # optax-only optimizers (issue 17).  Sign and layer-normalised steps have length
    # ~η: they run on a decaying learning rate (``decaying`` above).  Sign descent
    # zigzags along the Rosenbrock valley (its steps are diagonal): small η, 2000 steps.
    case(
        "sign_sgd",
        lr=0.05,
        rosen_lr=0.005,
        complex_ok=True,
        **decaying("sign_sgd", 2000),
        reference=optax_ref(lambda lr: optax.sign_sgd(optax_cosine(lr, 2000))),
    ),
    case(
        "signum",
        lr=0.05,
        rosen_lr=0.05,
        complex_ok=True,
        **decaying("signum", 1000),
        reference=optax_ref(lambda lr: optax.signum(optax_cosine(lr, 1000))),
    ),
    case(
        "lion",
        lr=0.05,
        rosen_lr=0.05,
        complex_ok=True,
        **decaying("lion", 1000),
        reference=optax_ref(lambda lr: optax.lion(optax_cosine(lr, 1000))),
    ),
    case(
        "novograd",
        lr=0.05,
        rosen_lr=0.01,
        complex_ok=True,
        per_leaf=True,
        **decaying("novograd", 1000),
        reference=optax_ref(lambda lr: optax.novograd(optax_cosine(lr, 1000))),
    ),
    case(
        "fromage",
        lr=0.1,
        rosen_lr=0.1,
        complex_ok=True,
        per_leaf=True,
        **decaying("fromage", 1000),
        reference=optax_ref(lambda lr: optax.fromage(optax_cosine(lr, 1000))),
    ),
    case(
        "adabelief",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.adabelief(lr)),
    ),
    case(
        "adabelief",
        variant="nesterov",
        lr=0.05,
        rosen_lr=0.04,
        nesterov=True,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.adabelief(lr, nesterov=True)),
    ),
    case(
        "yogi",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.yogi(lr)),
    ),
    case(
        "adan",
        lr=0.05,
        rosen_lr=0.04,
        steps=1000,
        weight_decay=1e-4,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.adan(lr, weight_decay=1e-4)),
    ),
    case(
        "optimistic_gradient_descent",
        lr=0.1,
        rosen_lr=0.006,
        steps=2000,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.optimistic_gradient_descent(lr)),
    ),
    case(
        "optimistic_adam",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.optimistic_adam(lr)),
    ),
    case(
        "optimistic_adam_v2",
        lr=0.05,
        rosen_lr=0.04,
        complex_ok=True,
        reference=optax_ref(lambda lr: optax.optimistic_adam_v2(lr)),
    ),
    # The default noise (variance 0.01 / t^0.55) leaves the quadratic's iterate ~4e-3
    # from the minimum after 1000 steps, above the contract's 1e-3: a smaller eta here.
    case(
        "noisy_sgd",
        leafwise=False,
        lr=0.1,
        rosen_lr=0.015,
        steps=1000,
        eta=1e-6,
        complex_ok=True,
        per_leaf=True,
        reference=optax_ref(lambda lr: optax.noisy_sgd(lr, eta=1e-6)),
    ),
    # One update is torch's step(closure): up to max_iter iterations, each evaluating the loss.
    case(
        "lbfgs",
        lr=1.0,
        rosen_lr=0.5,
        steps=20,
        max_iter=5,
        needs=LOSS,
        leafwise=False,
        reference=torch_ref(lambda ps, lr: T.LBFGS(ps, lr, max_iter=5), closure=True),
    ),
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
        reference=torch_ref(
            lambda ps, lr: T.LBFGS(ps, lr, history_size=4, line_search_fn="strong_wolfe"),
            closure=True,
        ),
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
        reference=optax_ref(lambda lr: grad_keyword(optax.lbfgs()), float32=True),
    ),
    # Schedule-free: the params are the interpolation y (the average is
    # schedule_free_eval_params'), which converges too.
    case(
        "schedule_free_adamw",
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.05,
        steps=1000,
        reference=optax_ref(lambda lr: optax.contrib.schedule_free_adamw(lr)),
    ),
    case(
        "schedule_free_adamw",
        variant="warmup-decay-f32",
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.05,
        steps=1500,
        warmup_steps=20,
        weight_decay=1e-4,
        state_dtype=jnp.float32,
        reference=optax_ref(
            lambda lr: optax.contrib.schedule_free_adamw(
                lr, warmup_steps=20, weight_decay=1e-4, state_dtype=jnp.float32
            ),
            rtol=1e-6,  # the state in float32 on both sides
        ),
    ),
    case(
        "schedule_free_sgd",
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.1,
        steps=1000,
        reference=optax_ref(lambda lr: optax.contrib.schedule_free_sgd(lr)),
    ),
    # Learning-rate-free: the learning rate is a multiplier (1 by default).
    case(
        "prodigy",
        leafwise=False,
        lr=1.0,
        rosen_lr=1.0,
        moves_low_precision_params=False,
        reference=optax_ref(lambda lr: optax.contrib.prodigy(lr)),
    ),
    case(
        "dadapt_adamw",
        leafwise=False,
        lr=0.5,
        rosen_lr=0.5,
        reference=optax_ref(lambda lr: optax.contrib.dadapt_adamw(lr)),
    ),
    case(
        "dog",
        leafwise=False,
        lr=1.0,
        complex_ok=True,
        rosen_lr=1.0,
        steps=1500,
        moves_low_precision_params=False,
        reference=optax_ref(lambda lr: optax.contrib.dog(lr)),
    ),
    case(
        "dowg",
        leafwise=False,
        lr=1.0,
        complex_ok=True,
        rosen_lr=1.0,
        steps=1500,
        reference=optax_ref(lambda lr: optax.contrib.dowg(lr)),
    ),
    # COCOB's bets creep along the valley: a smaller alpha and more steps.
    case(
        "cocob",
        lr=1.0,
        rosen_lr=1.0,
        steps=4000,
        alpha=10.0,
        reference=optax_ref(lambda lr: optax.contrib.cocob(lr, alpha=10.0)),
    ),
    # Mechanic's learned scale keeps growing on a noiseless problem: it circles
    # the minimum and comes down the valley slowly.  named_chain keeps Adam's
    # eps apart from Mechanic's own eps in the hyperparameters' names.
    case(
        "mechanize",
        leafwise=False,
        variant="adam",
        lr=1.0,
        rosen_lr=1.0,
        steps=2500,
        rosen_tol=0.1,
        moves_low_precision_params=False,
        make=lambda lr: gradtx.mechanize(gradtx.named_chain(("adam", gradtx.adam(lr)))),
        reference=optax_ref(lambda lr: optax.contrib.mechanize(optax.adam(lr))),
    ),
    case(
        "momo",
        leafwise=False,
        lr=1.0,
        complex_ok=True,
        rosen_lr=1.0,
        needs=("value",),
        reference=optax_ref(lambda lr: optax.contrib.momo(lr)),
    ),
    case(
        "momo_adam",
        leafwise=False,
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.1,
        needs=("value",),
        reference=optax_ref(lambda lr: optax.contrib.momo_adam(lr)),
    ),
    # The trust ratio makes each step η‖θ‖ long: it hovers within ~η of the minimum.
    case(
        "lamb",
        lr=0.05,
        rosen_lr=0.01,
        steps=1000,
        rosen_tol=0.05,
        weight_decay=1e-4,
        per_leaf=True,
        reference=optax_ref(lambda lr: optax.lamb(lr, weight_decay=1e-4)),
    ),
    case(
        "lars",
        lr=0.05,
        rosen_lr=0.003,
        steps=1000,
        trust_coefficient=1.0,
        weight_decay=1e-4,
        per_leaf=True,
        reference=optax_ref(lambda lr: optax.lars(lr, weight_decay=1e-4, trust_coefficient=1.0)),
    ),
    case(
        "sm3",
        lr=0.3,
        complex_ok=True,
        rosen_lr=0.15,
        steps=1000,
        per_leaf=True,
        reference=optax_ref(lambda lr: optax.sm3(lr)),
    ),
    case(
        "adopt",
        lr=0.03,
        rosen_lr=0.02,
        steps=1500,
        b2=0.99,
        reference=optax_ref(lambda lr: optax.contrib.adopt(lr, b2=0.99)),
    ),
    case(
        "acprop",
        lr=0.03,
        complex_ok=True,
        rosen_lr=0.01,
        steps=1000,
        reference=optax_ref(lambda lr: optax.contrib.acprop(lr)),
    ),
    case(
        "ademamix",
        lr=0.03,
        complex_ok=True,
        rosen_lr=0.03,
        steps=1000,
        b3=0.99,
        reference=optax_ref(lambda lr: optax.contrib.ademamix(lr, b3=0.99)),
    ),
    # at rosen_lr=0.01 it hovers 0.002-0.04 from the minimum, where it ends depending on
    # float32 rounding; at 0.005 it settles (0.001-0.002 in float32 and float64)
    case(
        "simplified_ademamix",
        lr=0.01,
        complex_ok=True,
        rosen_lr=0.005,
        steps=1500,
        b1=0.9,
        alpha=1.0,
        reference=optax_ref(lambda lr: optax.contrib.simplified_ademamix(lr, b1=0.9, alpha=1.0)),
    ),
    # eps is added to the learning rate (authors' code, optax): a tiny one keeps lr = 0 still.
    case(
        "madgrad",
        lr=0.05,
        complex_ok=True,
        rosen_lr=0.05,
        steps=1000,
        eps=1e-30,
        # optax forms λ_k = (η + eps) sqrt(k + 1) in float32 under x64 (tests/reference/test_madgrad.py)
        reference=optax_ref(lambda lr: optax.contrib.madgrad(lr, eps=1e-30), rtol=1e-6),
    ),
    case(
        "polyak_sgd",
        leafwise=False,
        lr=0.5,
        complex_ok=True,
        rosen_lr=0.5,
        lr_key="max_learning_rate",
        needs=("value",),
        reference=optax_ref(lambda lr: optax.polyak_sgd(lr)),
    ),
    case(
        "sam",
        leafwise=False,
        variant="opaque-sgd",
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.015,
        steps=1000,
        make=lambda lr: gradtx.sam(
            gradtx.sgd(lr),
            gradtx.chain(gradtx.normalize(), gradtx.scale(-1e-3)),
            opaque_mode=True,
        ),
        needs=("grad_fn",),
        per_leaf=True,
        reference=optax_ref(
            lambda lr: optax.contrib.sam(
                optax.sgd(lr),
                optax.chain(optax.contrib.normalize(), optax.scale(-1e-3)),
                opaque_mode=True,
            )
        ),
    ),
    case(
        "sophia",
        lr=0.01,
        rosen_lr=0.01,
        steps=1000,
        needs=("obj_fn",),
        per_leaf=True,
        reference=optax_ref(lambda lr: optax.contrib.sophia(lr)),
    ),
    case(
        "galore",
        lr=0.05,
        rosen_lr=0.04,
        rank=1,
        update_proj_gap=5,
        per_leaf=True,
        reference=optax_ref(
            lambda lr: optax.contrib.galore(lr, rank=1, update_proj_gap=5), float32=True
        ),
    ),
    # Per-example gradients, one example per step; no noise and a clip above every
    # gradient, so the contract's convergence holds (tests/reference/test_privacy.py
    # checks noise and clipping against optax).
    case(
        "dpsgd",
        leafwise=False,
        lr=0.1,
        complex_ok=True,
        rosen_lr=0.006,
        steps=2000,
        make=lambda lr: one_example(gradtx.dpsgd(lr, 1e6, 0.0, seed=0, momentum=0.5)),
        per_leaf=True,
        reference=optax_ref(
            lambda lr: one_example(optax.contrib.dpsgd(lr, 1e6, 0.0, 0, momentum=0.5)), float32=True
        ),
    ),
]

IDS = [c.id for c in REGISTRY]
