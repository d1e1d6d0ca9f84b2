"""Hyperparameter ranges: the interval tests and the values a schedule takes where it may leave one."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import is_schedule
from gradtx._dtypes import INT32_MAX


def outside(value: float, bounds: tuple) -> bool:
    """``value`` lies outside ``(low, high, low_open, high_open)`` (``None``: unbounded)."""
    low, high, low_open, high_open = bounds
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    return bool(bad_low or bad_high)


def interval(bounds: tuple) -> str:
    """``(low, high, low_open, high_open)`` written as an interval: ``[0, 1)``."""
    low, high, low_open, high_open = bounds
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


_DENSE_STEPS = 2**16


_KNOTS = 64


def check_schedule_range(call: str, name: str, schedule: Any, bounds: tuple) -> None:
    """Refuse a gradtx schedule whose values leave the hyperparameter's range.

    A range of [0, inf) is not checked here: gradtx's schedule constructors
    already keep their values there.  See ``schedule_values`` for what is
    evaluated and what is not checked.
    """
    low, high = bounds[0], bounds[1]
    if high is None and (low is None or low == 0):
        return
    probed = schedule_values(schedule)
    where = None if probed is None else first_outside(*probed, bounds)
    if where is not None:
        raise ValueError(
            f"{call}({name}={type(schedule).__name__}(...)): the schedule {where}; "
            f"{name} must be in {interval(bounds)}"
        )


@jax.jit
def _evaluate(schedule: Any, counts: jax.Array) -> jax.Array:
    # one compiled program per schedule form: an eager evaluation of 2**16 counts
    # costs up to 0.1 s a call (SGDR), and set_hyperparams may check one every step
    return schedule(counts)


def schedule_values(schedule: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(counts, values)``: a gradtx schedule evaluated where it may leave a range.

    The counts are every step below 2**16, the first 64 fields' values and their
    neighbours (boundaries, ends of phases) and the powers of 2 up to int32's
    maximum: that catches ``momentum=linear(0.5, 1.5, 10)``, while a value out of
    range between those steps of a longer schedule can pass.  A plain callable, a
    schedule holding traced fields or one that cannot take a vector of counts
    gives ``None`` (not checked).
    """
    if not is_schedule(schedule):
        return None
    fields = jax.tree.leaves(schedule)
    if any(isinstance(x, jax.core.Tracer) for x in fields):
        return None
    try:
        knots = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in fields] + [[]])
    except (TypeError, ValueError):  # a non-numeric field: not a schedule this can read
        return None
    knots = knots[np.isfinite(knots) & (np.abs(knots) < INT32_MAX)][:_KNOTS]
    near = np.floor(knots)[:, None] + np.arange(-1.0, 2.0)
    powers = np.minimum(2.0 ** np.arange(32), INT32_MAX)
    counts = np.zeros(_DENSE_STEPS + 3 * _KNOTS + 32)  # one length: no recompiling per call
    picked = np.concatenate([np.arange(_DENSE_STEPS), near.ravel(), powers])
    counts[: picked.size] = np.clip(picked, 0, INT32_MAX)
    values = None
    with jax.ensure_compile_time_eval():  # concrete even where a factory runs under jit
        steps = jnp.asarray(counts, jnp.int32)
        for evaluate in (_evaluate, lambda s, c: s(c)):  # eagerly where it cannot be jitted
            try:
                values = np.asarray(evaluate(schedule, steps), np.float64)
                break
            except Exception:  # noqa: BLE001, S112  (unusual: unchecked, as a plain callable)
                continue
    if values is None or values.shape != counts.shape:
        return None
    return counts, values


def first_outside(
    counts: np.ndarray,
    values: np.ndarray,
    bounds: tuple,
    *,
    nan: bool = False,
    finite: bool = False,
) -> str | None:
    """Where ``values`` (at ``counts``) first leave ``bounds``: ``"reaches -1 at step 0"``.

    An open low end is taken as included (a decay that underflows to it far out
    is harmless); an open high end is not (a ``b1`` reaching 1 makes ``1 - b1^t``
    zero).  An infinite value is judged by its sign against the bounds, and is
    outside where ``finite`` is true; a NaN is outside only where ``nan`` is true.
    """
    low, high = bounds[0], bounds[1]
    above = False if high is None else (values >= high) if bounds[3] else (values > high)
    bad = ~np.isnan(values) & ((values < (-np.inf if low is None else low)) | above)
    bad |= (np.isnan(values) & nan) | (np.isinf(values) & finite)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"reaches {values[i]:g} at step {int(counts[i])}"
