"""Averaged parameters kept beside an optimizer: EMA and SWA (``torch.optim.swa_utils``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import apply_updates
from gradtx._base import extras_for
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._factory_state import Unused
from gradtx._specs import Choice
from gradtx._specs import Hyper
from gradtx._specs import Transform
from gradtx.transforms.averaging import PolyakAverageState
from gradtx.transforms.averaging import as_returned
from gradtx.wrappers.flatten import FlattenState
from gradtx.wrappers.groups import MaskedNode


class AverageParamsState(NamedTuple):
    """State of ``average_params``.

    Attributes:
      step: updates of the wrapped optimizer so far (int32): when to average.
      n_averaged: how many parameter sets the average holds (torch's ``n_averaged``).
      averaged: the averaged parameters (``gradtx.averaged_params`` returns them).
      inner_state: the wrapped optimizer's state.
    """

    step: jax.Array
    n_averaged: jax.Array
    averaged: Params
    inner_state: OptState


def _no_decay_for_swa(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if arguments["method"] == "swa":
        return {**arguments, "decay": Unused("method='swa' (a running mean) keeps no decay")}
    if arguments["decay"] is None:
        raise TypeError(f"{call}(decay=None): method='ema' needs a decay in [0, 1]")
    return arguments


@factory(
    derive=_no_decay_for_swa,
    inner=Transform(),
    method=Choice("ema", "swa"),
    decay=Hyper(low=0.0, high=1.0, nullable=True, decays=True),
    start=Hyper(low=0.0, integer=True),
    every=Hyper(low=1.0, integer=True),
)
def average_params(
    inner: optax.GradientTransformation,
    method: str = "ema",
    decay: float | None = 0.999,
    start: int = 0,
    every: int = 1,
) -> GradientTransformation:
    """Keep an average of the parameters the optimizer produces, as torch's ``AveragedModel``.

    After update ``t`` (1-based) of ``inner``, with ``θ_t`` the parameters it
    leads to (``params + updates``), the average is updated when ``t > start``
    and ``t - start - 1`` is a multiple of ``every``::

      first time:  avg = θ_t                         (torch copies on its first call)
      then:        avg = avg + w (θ_t - avg),   w = 1 - decay     (method="ema")
                                                 w = 1 / (n + 1)   (method="swa", n averaged so far)

    That is ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))``
    (EMA) or ``AveragedModel(model)`` (SWA's running mean) with
    ``update_parameters(model)`` called after those optimizer steps, equal in
    float64 (tested).  The updates pass through unchanged: you train the
    params, and ``gradtx.averaged_params(state)`` returns the average as a
    params tree (evaluate or checkpoint it; pair SWA with ``schedules.swa_lr``
    for torch's ``SWALR``).  ``decay``, ``start`` and ``every`` are data in the
    state; the average is state like any other (jit, vmap, sharding,
    checkpoints).  Batch-norm statistics are model state, not parameters:
    recompute them for the averaged params in your model code (torch's
    ``update_bn``), e.g. one pass over the data with the Flax model in training
    mode.  For bfloat16 and float16 params the average is kept, and returned,
    in float32: kept in bfloat16 an EMA stalls (a step of 0.001 of the
    difference is below half an ulp); cast it to the params' dtype to evaluate.

    Args:
      inner: the optimizer whose parameters are averaged.
      method: ``"ema"`` or ``"swa"`` (the running mean).
      decay: the EMA's decay in [0, 1] (unused by SWA).
      start: updates before the first averaging.
      every: average every ``every``-th update after ``start``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.average_params(gradtx.sgd(0.1), method="swa")
      >>> params = {"w": jnp.zeros(1)}
      >>> state = opt.init(params)
      >>> for _ in range(3):  # params -0.1, -0.2, -0.3: their mean is -0.2
      ...     updates, state = opt.update({"w": jnp.ones(1)}, state, params)
      ...     params = gradtx.apply_updates(params, updates)
      >>> gradtx.averaged_params(state)["w"].round(6)
      Array([-0.2], dtype=float32)

    References:
      Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
      Generalization", UAI 2018; Polyak & Juditsky 1992.
    """
    call = current_call("gradtx.average_params")

    def init(params):
        zero = jnp.zeros([], jnp.int32)
        # In float32 for 16-bit params, as statistics are: a bfloat16 average stalls
        # (an EMA step of 0.001 of the difference is below half an ulp).
        average = jax.tree.map(lambda p: jnp.array(p, _dtypes.state_dtype(p.dtype)), params)
        return AverageParamsState(zero, zero, average, inner.init(params))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(f"{call}: update needs params (the average is of params + updates)")
        out, inner_state = inner.update(
            updates, state.inner_state, params, **extras_for(inner, extra)
        )
        step = _numerics.safe_increment(state.step)
        t0, k = jnp.asarray(start).astype(jnp.int32), jnp.asarray(every).astype(jnp.int32)
        take = (step > t0) & ((step - t0 - 1) % jnp.maximum(k, 1) == 0)
        first = state.n_averaged == 0

        def one(avg, new):
            wide = _dtypes.compute_dtype(avg.dtype, new.dtype)
            if method == "ema":
                w = _numerics.one_minus(decay, wide)
            else:
                w = 1 / (state.n_averaged + 1).astype(wide)
            old, new_w = avg.astype(wide), _exactly(new, wide)
            moved = jnp.where(first, new_w, old + w * (new_w - old)).astype(avg.dtype)
            return jnp.where(take, moved, avg)

        # The params the user's apply_updates gives: the update as the user gets it
        # (rounded to a 16-bit param's dtype), the sum in the promoted dtype, rounded
        # once to the param's dtype.
        returned = jax.tree.map(as_returned, out, params)
        averaged = jax.tree.map(one, state.averaged, apply_updates(params, returned))
        n_averaged = jnp.where(take, _numerics.safe_increment(state.n_averaged), state.n_averaged)
        return out, AverageParamsState(step, n_averaged, averaged, inner_state)

    return GradientTransformation(init, update)


def _exactly(x: jax.Array, wide: Any) -> jax.Array:
    """``x`` cast to the wider dtype ``wide``, holding exactly ``x``'s values.

    Under jit XLA may drop a rounding to a 16-bit dtype that a widening cast
    follows (it allows excess precision), so the average would be of params
    ``apply_updates`` never gave, and jit would differ from eager.  Across an
    optimization barrier the rounded value is materialised.
    """
    if x.dtype == wide:
        return x
    return jax.lax.optimization_barrier(x).astype(wide)


def _averages(state: Any) -> Iterator[Any]:
    if isinstance(state, AverageParamsState):
        yield state.averaged
        yield from _averages(state.inner_state)
    elif isinstance(state, PolyakAverageState):
        yield state.ax
    elif isinstance(state, FlattenState):
        if any(True for _ in _averages(state.inner_state)):
            raise ValueError(
                "gradtx.averaged_params: the average is inside gradtx.flatten, in its flat "
                "buffers, which do not keep the params' tree; average outside it: "
                "gradtx.average_params(gradtx.flatten(...))"
            )
    elif isinstance(state, (tuple, list)):
        for child in state:
            yield from _averages(child)
    elif isinstance(state, dict):
        for child in state.values():
            yield from _averages(child)


def _masked(x: Any) -> bool:
    return isinstance(x, (MaskedNode, optax.MaskedNode))


def _several(found: list[Any], leaves: str = "") -> ValueError:
    return ValueError(
        f"gradtx.averaged_params: the state holds {len(found)} averages{leaves}; it needs "
        "exactly one (from gradtx.average_params or gradtx.asgd), or one per group of a "
        "gradtx.partition"
    )


def _joined(found: list[Any]) -> Any:
    """One params tree from the averages in a state: one of every leaf, or one per group
    of a ``partition`` (each holds its group's leaves, ``MaskedNode()`` in place of the
    others); a ``ValueError`` naming the leaves that have none, or several."""
    columns = [jax.tree_util.tree_flatten_with_path(a, is_leaf=_masked) for a in found]
    if len({c[1] for c in columns}) > 1:  # averages of different trees: nested averagers
        raise _several(found)
    paths = [path for path, _ in columns[0][0]]
    held = [[leaf for _, leaf in c[0]] for c in columns]
    out, none, several = [], [], []
    for i, path in enumerate(paths):
        arrays = [h[i] for h in held if not _masked(h[i])]
        if len(arrays) > 1:
            several.append(jax.tree_util.keystr(path))
        if not arrays:
            none.append(jax.tree_util.keystr(path))
        out.append(arrays[0] if arrays else None)
    if several:  # an averager inside a group that is averaged too
        raise _several(found, f", several of {', '.join(several)}")
    if none:
        raise ValueError(
            "gradtx.averaged_params: the average is inside gradtx.masked or gradtx.partition "
            "(or optax's), so it holds only the leaves given to it, MaskedNode() elsewhere, "
            f"not a params tree (no average of {', '.join(none)}); average outside it: "
            "gradtx.average_params(gradtx.partition(...)), average every group, or read "
            "the group's own leaves from its state"
        )
    return jax.tree.unflatten(columns[0][1], out)


def averaged_params(state: OptState) -> Params:
    """The averaged parameters in ``state``: ``average_params``'s average, or ASGD's ``ax``.

    Inside ``partition`` (or ``masked``), each group keeps the average of its own
    leaves: where every leaf is in a group that averages (torch's ASGD with several
    param groups), the groups' averages are returned as one params tree.  Raises
    ``ValueError`` if the state holds no average, several of one leaf (nested
    averagers), or none of some leaves (a group that does not average).  The
    arrays are copies, which a later step that donates the state leaves alone.
    """
    found = list(_averages(state))
    if not found:
        raise _several(found)
    joined = _joined(found)
    # a copy: the state's own arrays are deleted by the next step that donates the state
    return jax.tree.map(_tree.own_copy, joined)
