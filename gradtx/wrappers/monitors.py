"""Monitors: norms of the gradient, the update and the params, kept in state."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _checks
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import OptState
from gradtx._base import extras_for
from gradtx._base import float_dtype as _float_dtype
from gradtx._base import kind_of
from gradtx._hyperparam_paths import short_names
from gradtx._specs import Transform
from gradtx.transforms.clipping import global_norm
from gradtx.wrappers._state import StateCheck


class TrackNormsState(NamedTuple):
    """Global L2 norms seen at the last update (NaN before the first one).

    Attributes:
      grad_norm: of the gradient (the chain's ``grads`` if given, else the input).
      update_norm: of the updates this transform returns.
      param_norm: of the params passed to that update.
      inner_state: the wrapped transform's state (``EmptyState()`` when used
        as a chain member).
    """

    grad_norm: jax.Array
    update_norm: jax.Array
    param_norm: jax.Array
    inner_state: OptState


def track_norms(inner: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """Record the global gradient, update and parameter norms in the state.

    Two placements:

    * ``track_norms()`` as a chain member passes its input through unchanged
      (a gradient map).  At the end of a chain,
      ``gradtx.chain(gradtx.adam(1e-3), gradtx.track_norms())``, it sees the
      final update as input and the gradient as the chain's ``grads``.  First
      in a chain both norms are the gradient's.
    * ``track_norms(opt)`` wraps an optimizer: gradient norm of what enters
      ``opt``, update norm of what it returns.

    Read them with ``gradtx.get_norms(state)``, a dict like
    ``get_hyperparams``'s (``{"grad_norm": ..., "update_norm": ...,
    "param_norm": ...}``; prefixed by a group or chain name where several
    monitors sit in one state).  The norms are sqrt of the sum of squares over
    all leaves, in JAX's default float dtype.  ``update`` needs ``params``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.track_norms(gradtx.sgd(0.5))
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> _, state = opt.update({"w": jnp.array([0.0, 2.0])}, opt.init(params), params)
      >>> {k: float(v) for k, v in gradtx.get_norms(state).items()}
      {'grad_norm': 2.0, 'update_norm': 1.0, 'param_norm': 5.0}
    """
    call = "gradtx.track_norms"
    inner = Transform(optional=True).check(call, "inner", inner)

    def init(params):
        checked.record(params)
        nan = jnp.full([], jnp.nan, _float_dtype())
        inner_state = EmptyState() if inner is None else inner.init(params)
        return _tree.settled(TrackNormsState(nan, nan, nan, inner_state), params)

    checked = StateCheck(call, init)

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(f"{call}: update needs params (it records their norm)")
        state = checked.check(state, updates, params)
        # Its own check, as clip_by_global_norm's: the norms read every leaf, an inner
        # optimizer may be optax's (which checks nothing), and there may be none.
        # Float32 updates for 16-bit params are what a gradtx call hands its stages.
        updates, params = _update_checks.check_updates(call, updates, params, widened=True)
        dtype = state.grad_norm.dtype
        grads = extra.get("grads")
        grads = None if grads is None else _checks.check_tree(call, grads, "grads")
        grad_norm = global_norm(updates if grads is None else grads, dtype)
        if inner is None:
            out, inner_state = updates, state.inner_state
        else:
            out, inner_state = inner.update(
                updates, state.inner_state, params, **extras_for(inner, extra)
            )
        new_state = TrackNormsState(
            grad_norm, global_norm(out, dtype), global_norm(params, dtype), inner_state
        )
        return out, _tree.settled(new_state, (params, out))

    return (GradientMap if inner is None else kind_of(inner))(init, update)


def _monitors(state: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple, TrackNormsState]]:
    if isinstance(state, TrackNormsState):
        yield path, state
        yield from _monitors(state.inner_state, path)
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        for field, child in zip(state._fields, state):
            # as for hyperparameters, a wrapper's inner_state is not part of names
            yield from _monitors(child, path if field == "inner_state" else path + (field,))
    elif isinstance(state, (tuple, list)):
        for i, child in enumerate(state):
            yield from _monitors(child, path + (str(i),))
    elif isinstance(state, Mapping):
        for key, child in state.items():
            yield from _monitors(child, path + (str(key),))


def get_norms(state: OptState) -> dict[str, jax.Array]:
    """The norms every ``track_norms`` in ``state`` recorded at the last update.

    Keys are ``grad_norm``, ``update_norm``, ``param_norm``, each the shortest
    ``/``-suffix of its path that is unique (``"head/grad_norm"`` in a
    ``partition`` with a monitor per group).  Empty if there is no monitor.
    """
    found = {}
    for i, (path, mon) in enumerate(_monitors(state)):
        for field in ("grad_norm", "update_norm", "param_norm"):
            # the index keeps two monitors at one path (nested) apart
            found[("/".join(path + (field,)), i)] = getattr(mon, field)
    names = [name for name, _ in found]
    if len(set(names)) != len(names):
        names = [f"{name}#{i}" for name, i in found]
    short = short_names(names)
    return {short[n]: _tree.bare(v) for n, v in zip(names, found.values())}
