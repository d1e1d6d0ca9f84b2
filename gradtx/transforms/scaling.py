"""Scaling by constants and by the learning rate."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import is_schedule
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._build import reads_count
from gradtx._factory import factory
from gradtx._hyperparameterized import owning
from gradtx._specs import LEARNING_RATE
from gradtx._specs import Flag
from gradtx._specs import Hyper


def scaled(updates: Updates, factor: Any) -> Updates:
    """``updates * factor`` leaf by leaf, in at least float32, each in its own dtype."""

    def one(u):
        dtype = _dtypes.compute_dtype(u.dtype)
        if dtype == u.dtype:
            return u * _tree.scalar_like(factor, u)
        return (u.astype(dtype) * jnp.asarray(factor).astype(dtype)).astype(u.dtype)

    return jax.tree.map(one, updates)


@factory(kind=GradientMap, factor=Hyper())
def scale(factor: float) -> GradientMap:
    """Multiply the updates by ``factor`` (stored in state as ``factor``).

    A gradient map: a scaled gradient is still a gradient for the statistics
    that follow in a ``chain``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale(-1.0)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([-1., -1.], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        return scaled(updates, factor), state

    return GradientMap(lambda params: EmptyState(), update)


@factory(learning_rate=LEARNING_RATE, flip_sign=Flag())
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiply the updates by ``-learning_rate`` (a number or a schedule).

    ``u <- -eta_k * u`` where ``eta_k`` is ``learning_rate(k)`` for a schedule
    called with the 0-based step count ``k``.  Unlike optax, there is no
    ``None`` learning rate that silently skips the sign flip.

    Args:
      learning_rate: non-negative number, gradtx schedule or callable.
      flip_sign: ``False`` multiplies by ``+learning_rate`` (for ascent).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_learning_rate(0.5)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([-0.5, -0.5], dtype=float32)
    """
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        reads_count()  # a schedule made inside a body (adagrad's lr_decay)

    def update(updates, state, params=None, **extra):
        lr = learning_rate
        if callable(lr):
            lr = lr(step_count(extra, current_call("gradtx.scale_by_learning_rate")))
        return scaled(updates, sign * jnp.asarray(lr)), state

    return GradientTransformation(lambda params: EmptyState(), update)


def _path_name(path: tuple) -> str:
    return "/".join(_tree.key_name(k) for k in path) or "all"


MULTIPLIER = Hyper(low=0.0, schedule=True)


def scale_by_multipliers(multipliers: Any) -> GradientTransformation:
    """Multiply each leaf's update by its own factor: per-parameter learning rates.

    ``multipliers`` is a pytree whose leaves are numbers or gradtx schedules,
    a prefix of the params (``{"head": 0.1, "body": 1.0}`` scales whole
    subtrees).  Put it last in a chain: ``chain(adamw(1e-3),
    scale_by_multipliers(m))`` trains each leaf with learning rate
    ``1e-3 · m_leaf``.  That is exactly what torch's parameter groups with
    those learning rates do where the step is proportional to the learning
    rate: SGD, Adam and AdamW with their decay, NAdam, RAdam, Adamax,
    Adagrad, Adadelta, RMSprop, SparseAdam, Muon, Lion, LAMB, ....  Not for
    ASGD (``lr/(1 + λ·lr·t)^α``), Adafactor (``min(lr, 1/√t)``), Rprop (step
    sizes clipped to absolute bounds), LBFGS, AdaBound and AMSBound (absolute bounds),
    SWATS, the learning-rate-free ones (D-Adaptation, Prodigy, DoG, DoWG,
    COCOB, Mechanize, MoMo), MADGRAD, Fromage, Lookahead (and Ranger) and the
    schedule-free ones: give
    those ``gradtx.partition`` with one optimizer per group
    (``docs/porting_from_pytorch.md``, "Parameter groups").  Layer-wise
    learning-rate decay over a
    transformer's blocks is one expression::

      lr_decay = {"embed": 0.8**12, "blocks": [0.8 ** (11 - i) for i in range(12)], "head": 1.0}

    Each multiplier is a hyperparameter in the state named after its key
    path, ``blocks/3/multiplier``, which ``set_hyperparams`` changes without
    recompiling (so two key paths that print alike, ``{"a/b": x, "a": {"b":
    y}}``, are refused).  ``get_hyperparams`` shows each by its shortest
    unambiguous suffix (here ``3/multiplier``); both names address it.  A multiplier given
    as a schedule makes the transform keep a step count of its own.

    Args:
      multipliers: a prefix tree of the params with non-negative numbers or
        gradtx schedules (of the 0-based step) as leaves.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> params = {"body": jnp.ones(2), "head": jnp.ones(2)}
      >>> opt = gradtx.chain(gradtx.sgd(0.1), gradtx.scale_by_multipliers({"body": 1.0, "head": 0.1}))
      >>> updates, state = opt.update(params, opt.init(params), params)
      >>> updates["head"]
      Array([-0.01, -0.01], dtype=float32)
      >>> sorted(gradtx.get_hyperparams(state))[:2]
      ['body/multiplier', 'head/multiplier']
    """
    call = "gradtx.scale_by_multipliers"
    entries = jax.tree_util.tree_flatten_with_path(multipliers, is_leaf=is_schedule)[0]
    if not entries:
        raise ValueError(f"{call}(multipliers=...): give at least one multiplier")
    names = [f"{_path_name(path)}/multiplier" for path, _ in entries]
    first: dict[str, tuple] = {}
    for name, (path, _) in zip(names, entries):
        other = first.setdefault(name, path)
        if other is not path:
            # One name, one hyperparameter: both would read and set the same value.
            raise ValueError(
                f"{call}(multipliers=...): the entries at {jax.tree_util.keystr(other)} and "
                f"{jax.tree_util.keystr(path)} would both be named {name!r} (a '/' inside a "
                "key reads as a path separator); rename one of them"
            )
    checked = []
    for name, (_, value) in zip(names, entries):
        if callable(value) and not is_schedule(value):
            raise TypeError(
                f"{call}(multipliers=...): the entry {name} is a plain callable; use a number "
                "or a gradtx schedule (data, settable in the state)"
            )
        shown = f"multipliers[{name.rsplit('/', 1)[0]}]"
        checked.append(MULTIPLIER.check(call, shown, value))
    index_tree = jax.tree_util.tree_unflatten(
        jax.tree.structure(multipliers, is_leaf=is_schedule), list(range(len(entries)))
    )

    def build(**values):
        current = [values[name] for name in names]

        def init(params):
            _tree.per_leaf(call, "multipliers", index_tree, None, params)  # fits the params
            return EmptyState()

        def update(updates, state, params=None, **extra):
            index = _tree.per_leaf(call, "multipliers", index_tree, None, updates)
            leaves = [scaled(u, current[i]) for u, i in zip(jax.tree.leaves(updates), index)]
            return jax.tree.unflatten(jax.tree.structure(updates), leaves), state

        return GradientTransformation(init, update)

    # declared: set_hyperparams checks a new multiplier against the same range
    declared = dict.fromkeys(names, MULTIPLIER)
    return owning(build, dict(zip(names, checked)), call, declared=declared)
