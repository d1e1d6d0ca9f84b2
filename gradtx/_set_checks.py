"""Checks of a value that ``set_hyperparams`` writes into a state.

A concrete number (Python, NumPy) is checked as the factory that made the state
checked it at construction: its range, NaN and infinities, whole numbers for a
count, and rounding where it is stored.  A JAX array whose value is known (not
traced) is checked too where the state's maker is known; where it is only inferred
from names (below), an array is taken as given, the way past an inferred range
that is not the maker's.  A traced array is data, as at construction.

The state holds numbers, not the factory that made them (two optimizers of one
structure share one state layout), so the maker is looked up by the state's
structure: each ``@factory``'s ``init`` records itself as the maker of the
structure it made (``gradtx._hyperparameterized.MAKERS``), and only factories of identical
structure share an entry.  A state whose structure no ``init`` of this process
made (restored in a fresh process before any ``init``; wrapped leaves, as an
``nnx.Optimizer``'s) is matched by its names instead: the *candidates* are the
``@factory`` declarations (``gradtx._factory.DECLARED``: gradtx's and a user's)
whose numbers kept in state are the names the location holds, less stages a
zero or ``None`` leaves out, else every declaration of the name.  A value passes
if one candidate takes it; a name no candidate declares gets the NaN check only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _ranges
from gradtx import _stored
from gradtx import _tree
from gradtx._factory import DECLARED
from gradtx._factory_state import shown_name
from gradtx._hyperparameterized import makers_of
from gradtx._specs import Hyper
from gradtx.schedules._remake import refusal

_Range = tuple[Any, Any, bool, bool, bool]  # low, high, low_open, high_open, finite


def _candidates(name: str, location: Any) -> tuple[list[tuple[str, Any]], bool]:
    """``(call, spec of name)`` of each factory that may have made ``location``, and
    whether those are known to have made it (see the module docstring)."""
    makers = makers_of(location)
    if makers is not None:
        return [(call, specs[name]) for call, specs in makers if name in specs], True
    shown = getattr(location, "python_schedules", {})
    held = {*location.hyperparams, *map(shown_name, shown)}
    exact = [
        (call, specs[name])
        for call, specs in DECLARED
        if held <= specs.keys()
        and all(s.optional or s.nullable for k, s in specs.items() if k not in held)
    ]
    return exact or [(call, specs[name]) for call, specs in DECLARED if name in specs], False


def _widest(specs: list[Any]) -> list[_Range]:
    """The candidates' ranges, leaving out any range inside another."""

    def bound(b: Any) -> Any:
        return None if b is None else float(b)  # a bound given as an array: hashable

    found = {(bound(s.low), bound(s.high), s.low_open, s.high_open, s.finite) for s in specs}
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
    return not (bounds[4] and np.isinf(value)) and not _ranges.outside(value, bounds[:4])


def _shown(ranges: list[_Range], calls: list[str] | None = None, made: bool = False) -> str:
    intervals = []
    for r in ranges:
        shown = _ranges.interval(r[:4])
        if not r[4]:  # infinities allowed
            shown = shown.replace("(-inf", "[-inf").replace("inf)", "inf]")
        intervals.append(shown)
    if calls is None:
        return " or ".join(intervals)
    names = sorted(set(calls))
    who = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if made:
        return f"{' or '.join(intervals)}, as {who}, which made this state, takes it"
    return (
        f"{' or '.join(intervals)} (as for {who}, the factories whose numbers this state "
        "holds; a JAX array is taken unchecked)"
    )


def is_data(value: Any) -> bool:
    """Whether a value given to set_hyperparams holds a JAX array whose value is not
    known here (traced): data, taken as given."""
    return any(isinstance(x, jax.Array) and not _checks.is_known(x) for x in jax.tree.leaves(value))


def in_stored_form(key: str, name: str, value: Any, old: Any, location: Any) -> Any:
    """A tuple or list given for ``name`` as the factory that made ``location`` takes and
    stores it, checked by that factory's own spec (Adafactor keeps ``eps=(None, eps2)``
    as ``(eps2,)``).  Anything else, and numbers already in the stored form (as
    ``get_hyperparams`` shows them, traced ones too), unchanged."""
    if location is None or not isinstance(value, (tuple, list)):
        return value
    if not any(x is None for x in value):
        try:  # jnp: a tuple of traced numbers has a shape too
            if jnp.shape(jnp.asarray(value)) == jnp.shape(_tree.bare(old)):
                return value
        except (TypeError, ValueError):  # ragged, or not numbers: the spec says what
            pass
    own = [s for _, s in _candidates(name, location)[0] if type(s).check is not Hyper.check]
    return own[0].check("gradtx.set_hyperparams", key, value) if own else value


def _near_one(name: str, location: Any) -> bool:
    """Whether every factory that may have made ``location`` (any that declares
    ``name``, for optax's inject states) takes ``name`` as a rate or momentum up to 1."""
    if location is None:
        candidates = [(call, specs[name]) for call, specs in DECLARED if name in specs]
    else:
        candidates = _candidates(name, location)[0]
    return bool(candidates) and all(getattr(s, "near_one", False) for _, s in candidates)


def check_number(key: str, name: str, value: Any, old: Any, location: Any) -> None:
    """Refuse a concrete number (or numbers, for an array slot) for the hyperparameter
    ``name`` of ``location``, stored like ``old`` (for optax's ``inject_hyperparams``
    states, ``location`` is ``None``: NaN is then the only check)."""
    dtype = jnp.result_type(_tree.bare(old))
    if not jnp.issubdtype(dtype, jnp.floating):
        return
    if is_data(value):
        if isinstance(value, jax.Array) and location is not None and _near_one(name, location):
            _stored.warn_narrow_rate("gradtx.set_hyperparams", key, value)  # as a factory
        return
    given = np.asarray(value, np.float64)  # _cast_to took it: a number, a Fraction
    call = f"gradtx.set_hyperparams({key}={_checks.shown(value)})"
    if np.isnan(given).any():
        raise ValueError(f"{call}: {name} must not be NaN")
    if _dtypes.is_16_bit_float(dtype):
        # A state of optax.inject_hyperparams keeps numbers in the params' dtype: one
        # that collapses there (1e-8 to 0 in float16; a rate's or momentum's 0.999 to
        # 1.0 in bfloat16, where 1 - it is 0) is lost
        near_one = _near_one(name, location)
        _stored.warn_collapsed(
            "gradtx.set_hyperparams", key, value, one_allowed=near_one, default=None
        )
        stored = _stored.as_stored(given, dtype)[0]
        lost = (given != 0) & (stored == 0)
        if near_one:
            lost |= (given >= 0) & (given < 1) & (stored == 1)
        if lost.any():
            raise ValueError(
                f"{call}: {name} is {stored[lost].flat[0]:g} stored in {dtype}, as this state "
                "keeps it (optax.inject_hyperparams stores numbers in the params' dtype unless "
                "given hyperparam_dtype=jnp.float32)"
            )
    candidates, made = ([], False) if location is None else _candidates(name, location)
    if not made and any(isinstance(x, jax.Array) for x in jax.tree.leaves(value)):
        return  # the range is only inferred from names: an array is the way past it
    if not candidates:
        return
    calls, specs = [c for c, _ in candidates], [s for _, s in candidates]
    ranges = _widest(specs)
    finite = given[np.isfinite(given)]
    if all(s.integer for s in specs) and not np.all(finite == np.round(finite)):
        raise TypeError(f"{call}: {name} must be an int")
    stored, flushed = _stored.as_stored(given, dtype)
    for number, kept, flush in zip(given.ravel(), stored.ravel(), flushed.ravel()):
        taking = [r for r in ranges if _allows(r, number)]
        if not taking:
            raise ValueError(f"{call}: {name} must be in {_shown(ranges, calls, made)}")
        if not any(_allows(r, kept) for r in taking):
            why = f", so 1 - {name} is 0" if kept == 1 and taking[0][1] == 1.0 else ""
            how = _stored.rounding_note(kept, bool(flush), dtype, why)
            raise ValueError(
                f"{call}: {name} {how} outside {_shown(taking)} (jax_enable_x64 stores float64)"
            )


def check_field(key: str, value: Any) -> None:
    """A schedule's fields are finite numbers or NaN (some schedules' "absent", as
    ``exponential_decay``'s ``end_value``), as its constructor takes them."""
    for field in jax.tree.leaves(value):
        if is_data(field):
            continue
        try:
            given = np.asarray(field, np.float64)
        except (TypeError, ValueError, OverflowError):
            continue
        if np.isinf(given).any():
            shown = _checks.shown(value) if field is value else "..."
            raise ValueError(f"gradtx.set_hyperparams({key}={shown}): {key} must be finite")


def check_schedule(key: str, name: str, schedule: Any, location: Any) -> None:
    """Refuse a concrete schedule whose values are NaN or leave every candidate's range
    for ``name``, infinities included where the range is finite ([0, inf) too: fields
    set here bypassed the schedule's constructor, which keeps a learning rate there and
    refuses growth without bound)."""
    probed = _ranges.schedule_values(schedule)
    if probed is None:
        return
    candidates, made = ([], False) if location is None else _candidates(name, location)
    calls = [c for c, _ in candidates]
    ranges = _widest([s for _, s in candidates]) or [(None, None, False, False, False)]
    misses = [_ranges.first_outside(*probed, r[:4], nan=True, finite=r[4]) for r in ranges]
    if all(misses):
        what = f"must be in {_shown(ranges, calls, made)}" if candidates else "must not be NaN"
        raise ValueError(
            f"gradtx.set_hyperparams({key}=...): the {type(schedule).__name__} schedule "
            f"{misses[0]}; {name} {what}"
        )


def check_remade(key: str, schedule: Any, old: Any) -> None:
    """Refuse fields that the schedule's constructor refuses (``decay_steps=0``, a
    ``decay_steps`` at or below ``warmup_steps``): set here, they bypassed it.  A
    fraction of a step, or a count the step counter never reaches, is taken, as a
    traced JAX array's would be (``steps_as_data``).
    ``schedule`` is ``old`` with only the numbers of this call set (traced JAX arrays
    are data, left out).  Only a change is judged: ``old``, as stored before this call,
    must pass (one whose fields were set as traced arrays may not).  Within ``jax.jit``
    the stored fields are traced and nothing is checked, as for every value set there."""
    if schedule is old or refusal(old) is not None:
        return  # only traced JAX arrays were set (data, as at construction), or old fails
    err = refusal(schedule)
    if err is not None:
        raise type(err)(
            f"gradtx.set_hyperparams({key}=...): the {type(schedule).__name__} schedule "
            f"it makes is one its constructor refuses: {err}"
        )
