"""Checks of a value that ``set_hyperparams`` writes into a state.

A concrete number (Python, NumPy) is checked as the factory that made the state
checked it at construction: its range, NaN and infinities, whole numbers for a
count, and a decay rate that would round to 1 where it is stored.  A JAX array
is data, possibly traced, and is taken as it is, as at construction.

The state holds numbers, not the factory that made them (two optimizers of
one structure share one state layout), so the factory is inferred from the
names a location holds: the *candidates* are the ``@factory`` declarations
(``gradtx._factory.DECLARED``: gradtx's and a user's) whose numbers kept in
state are those names, less stages a zero or ``None`` leaves out.  A value
passes if one candidate takes it, so the factory that made the state, always a
candidate, never sees a value it accepts refused.  Where no declaration
matches (a number given as a JAX array is bound, not stored, so its factory's
names are not all there), every declaration of the name is a candidate, and a
name no factory declares gets the NaN check only.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _checks, _tree
from gradtx._factory import DECLARED

_Range = tuple[Any, Any, bool, bool, bool]  # low, high, low_open, high_open, finite


def _candidates(name: str, names: Collection[str]) -> list[tuple[str, Any]]:
    """``(call, spec of name)`` of each factory that may have made a location holding
    ``names`` (see the module docstring)."""
    held = set(names)
    exact = [
        (call, specs[name])
        for call, specs in DECLARED
        if held <= specs.keys()
        and all(s.optional or s.nullable for k, s in specs.items() if k not in held)
    ]
    return exact or [(call, specs[name]) for call, specs in DECLARED if name in specs]


def _widest(specs: list[Any]) -> list[_Range]:
    """The candidates' ranges, leaving out any range inside another."""
    found = {(s.low, s.high, s.low_open, s.high_open, s.finite) for s in specs}
    return sorted((r for r in found if not any(o != r and _inside(r, o) for o in found)), key=str)


def _inside(a: _Range, b: _Range) -> bool:
    low_ok = b[0] is None or (
        a[0] is not None and (a[0] > b[0] or (a[0] == b[0] and (a[2] or not b[2])))
    )
    high_ok = b[1] is None or (
        a[1] is not None and (a[1] < b[1] or (a[1] == b[1] and (a[3] or not b[3])))
    )
    return low_ok and high_ok and (a[4] or not b[4])


def _allows(bounds: _Range, value: float) -> bool:
    return not (bounds[4] and np.isinf(value)) and not _checks.outside(value, bounds[:4])


def _shown(ranges: list[_Range], calls: list[str] | None = None) -> str:
    intervals = []
    for r in ranges:
        shown = _checks.interval(r[:4])
        if not r[4]:  # infinities allowed
            shown = shown.replace("(-inf", "[-inf").replace("inf)", "inf]")
        intervals.append(shown)
    if calls is None:
        return " or ".join(intervals)
    names = sorted(set(calls))
    who = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{' or '.join(intervals)} (as for {who}, the factories whose numbers this state "
        "holds; a JAX array is taken unchecked)"
    )


def _is_data(value: Any) -> bool:
    return any(isinstance(x, jax.Array) for x in jax.tree.leaves(value))


def check_number(key: str, name: str, value: Any, old: Any, names: Collection[str]) -> None:
    """Refuse a concrete number (or numbers, for an array slot) for the hyperparameter
    ``name`` stored like ``old``, held beside ``names`` (empty for optax's
    ``inject_hyperparams`` states: NaN is then the only check)."""
    dtype = jnp.result_type(_tree.bare(old))
    if _is_data(value) or isinstance(value, bool) or not jnp.issubdtype(dtype, jnp.floating):
        return
    try:
        given = np.asarray(value, np.float64)
    except (TypeError, ValueError, OverflowError):  # not a number: _cast_to said so
        return
    call = f"gradtx.set_hyperparams({key}={value!r})"
    if np.isnan(given).any():
        raise ValueError(f"{call}: {name} must not be NaN")
    candidates = _candidates(name, names) if names else []
    if not candidates:
        return
    calls, specs = [c for c, _ in candidates], [s for _, s in candidates]
    ranges = _widest(specs)
    finite = given[np.isfinite(given)]
    if all(s.integer for s in specs) and not np.all(finite == np.round(finite)):
        raise TypeError(f"{call}: {name} must be an int")
    with np.errstate(over="ignore", under="ignore"):
        stored = given.astype(dtype).astype(np.float64)
    for number, kept in zip(given.ravel(), stored.ravel()):
        taking = [r for r in ranges if _allows(r, number)]
        if not taking:
            raise ValueError(f"{call}: {name} must be in {_shown(ranges, calls)}")
        if not any(_allows(r, kept) for r in taking):
            why = f", so 1 - {name} is 0" if kept == 1 and taking[0][1] == 1.0 else ""
            raise ValueError(
                f"{call}: {name} rounds to {kept:g} stored in {jnp.dtype(dtype)}{why}, outside "
                f"{_shown(taking)} (jax_enable_x64 stores float64)"
            )


def check_field(key: str, value: Any) -> None:
    """A schedule's fields are finite numbers or NaN (some schedules' "absent", as
    ``exponential_decay``'s ``end_value``), as its constructor takes them."""
    for field in jax.tree.leaves(value):
        if _is_data(field):
            continue
        try:
            given = np.asarray(field, np.float64)
        except (TypeError, ValueError, OverflowError):
            continue
        if np.isinf(given).any():
            shown = f"{value!r}" if field is value else "..."
            raise ValueError(f"gradtx.set_hyperparams({key}={shown}): {key} must be finite")


def check_schedule(key: str, name: str, schedule: Any, names: Collection[str]) -> None:
    """Refuse a concrete schedule whose values are NaN or leave every candidate's range
    for ``name``, infinities included where the range is finite ([0, inf) too: fields
    set here bypassed the schedule's constructor, which keeps a learning rate there and
    refuses growth without bound)."""
    probed = _checks.schedule_values(schedule)
    if probed is None:
        return
    candidates = _candidates(name, names) if names else []
    calls = [c for c, _ in candidates]
    ranges = _widest([s for _, s in candidates]) or [(None, None, False, False, False)]
    misses = [_checks.first_outside(*probed, r[:4], nan=True, finite=r[4]) for r in ranges]
    if all(misses):
        what = f"must be in {_shown(ranges, calls)}" if candidates else "must not be NaN"
        raise ValueError(
            f"gradtx.set_hyperparams({key}=...): the {type(schedule).__name__} schedule "
            f"{misses[0]}; {name} {what}"
        )
