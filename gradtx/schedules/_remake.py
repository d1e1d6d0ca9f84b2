"""A schedule rebuilt by its public constructor from its fields, so that fields
which bypassed the constructor are checked as construction checks them: a
schedule class built directly (``CosineDecay(init_value=-1.0, ...)``) and given
to a factory, or fields changed by ``set_hyperparams``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import is_schedule
from gradtx.schedules import combine
from gradtx.schedules import cosine
from gradtx.schedules import cyclic
from gradtx.schedules import decay
from gradtx.schedules import swa
from gradtx.schedules._common import steps_as_data

_VECTORS = ("boundaries", "scales")  # the fields that hold one number per boundary


class NotConcrete(Exception):
    """A field that is traced, batched (a vmapped sweep's) or wrapped: data, not checked."""


def _number(field: str, value: Any) -> Any:
    if isinstance(value, jax.core.Tracer):
        raise NotConcrete
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise NotConcrete from err
    if not (array.dtype.kind in "biu" or jnp.issubdtype(array.dtype, jnp.floating)):
        raise NotConcrete
    if field in _VECTORS and array.ndim == 0:
        raise TypeError(f"{field} must be a 1-D array (one number per boundary), got {value!r}")
    if array.ndim != (field in _VECTORS):  # batched: a vmapped sweep's
        raise NotConcrete
    return array.astype(np.float64).tolist() if array.dtype.kind not in "biuf" else array.tolist()


_CONSTRUCTORS: dict[type, Callable[..., Any]] = {
    decay.Constant: decay.constant,
    decay.ConstantWarmup: decay.constant_warmup,
    cosine.CosineDecay: cosine.cosine_decay,
    cosine.WarmupCosineDecay: cosine.warmup_cosine_decay,
    cosine.SGDR: cosine.sgdr,
    cyclic.Cyclical: cyclic.cyclical,
    cyclic.OneCycle: cyclic.one_cycle,
    cyclic.OneCycleMomentum: cyclic.one_cycle_momentum,
    decay.PiecewiseConstant: decay.piecewise_constant,
    decay.ExponentialDecay: decay.exponential_decay,
    decay.InverseTimeDecay: decay.inverse_time_decay,
    decay.InverseSqrtDecay: decay.inverse_sqrt_decay,
    decay.Polynomial: decay.polynomial,
    decay.Linear: decay.linear,
    swa.SWALR: swa.swa_lr,
    combine.Join: combine.join,
    combine.Product: combine.product,
}


def remade(schedule: Any) -> Any:
    """``schedule`` rebuilt by its public constructor from its stored fields, which
    checks them as construction does (ranges, whole step counts, one field against
    another); ``NotConcrete`` where a field is data.  A constructor argument is the
    field of its name, or what the fields say of it (``past_end="cycle"`` for a
    ``cycle`` of 1, exponential_decay's NaN ``end_value`` for None, ...).  Step counts
    are data (``steps_as_data``): a fraction is taken, as the constructor takes a
    fraction given as a JAX array."""
    with steps_as_data():
        return _remade(schedule)


def _remade(schedule: Any) -> Any:
    make = _CONSTRUCTORS.get(type(schedule))
    if make is None:  # a user's own Schedule subclass
        return schedule
    v = {
        f.name: getattr(schedule, f.name)
        if f.name == "schedules"
        else _number(f.name, getattr(schedule, f.name))
        for f in dataclasses.fields(schedule)
    }
    for flag in type(schedule)._flags:
        if v[flag] not in (0, 1):  # NaN too: the schedule would read it as 1
            raise ValueError(f"{flag} is a 0/1 option (True or False), got {v[flag]!r}")
    derived: dict[str, Any] = {
        "schedules": [_remade(m) if is_schedule(m) else m for m in v.get("schedules", ())],
        "past_end": "cycle" if v.get("cycle") else "hold",
        "anneal": "cos" if v.get("cosine") else "linear",
        # exp_range takes every gamma in (0, 1]; the amplitude's cycle_decay has no
        # argument of its own (the mode picks it), so the values' probe checks it
        "mode": "exp_range",
        "three_phase": bool(v.get("three_phase")),
        "staircase": bool(v.get("staircase")),
        "boundaries_and_scales": dict(zip(v.get("boundaries", ()), v.get("scales", ()))),
    }
    if make is decay.exponential_decay and np.isnan(v["end_value"]):
        derived["end_value"] = None  # its "no end value", stored as NaN
    names = inspect.signature(make).parameters
    return make(**{name: derived[name] if name in derived else v[name] for name in names})


def refusal(schedule: Any) -> TypeError | ValueError | None:
    """The error ``schedule``'s constructor raises on its fields (``remade``); None
    where it takes them, or where a field is data (traced or batched)."""
    try:
        remade(schedule)
    except NotConcrete:
        return None
    except (TypeError, ValueError) as err:
        return err
    return None


def check_built(call: str, name: str, schedule: Any) -> None:
    """Refuse a gradtx schedule given to ``call`` whose fields its constructor refuses
    (a class built directly skips the constructor's checks: a ``CosineDecay`` with a
    negative ``init_value`` was a negative learning rate).  Step counts are data, as
    for ``set_hyperparams``; a traced field is not checked."""
    err = refusal(schedule)
    if err is not None:
        raise type(err)(
            f"{call}({name}={type(schedule).__name__}(...)): its fields, rebuilt by its "
            f"constructor, are refused: {err}"
        )
