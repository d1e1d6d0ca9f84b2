"""torch's param-group numbers in a gradtx state: reading them, and writing them
where gradtx keeps numbers or checking them against its schedules.

Used by ``gradtx.torch_state``: a group's hyperparameters as Python floats
(``group_numbers``), a gradtx hyperparameter at a step (``value_at``), and the
import of a group into the hyperparameters' state (``set_from_group``), which
judges a schedule against torch's value within the roundings either side makes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx._base import is_schedule
from gradtx._factory_state import HyperparamsState
from gradtx._factory_state import shown_key
from gradtx._factory_state import shown_name
from gradtx._hyperparams import set_hyperparams
from gradtx._stored import outside_gradtx
from gradtx._torch_checks import SCHEDULER
from gradtx._torch_checks import SD
from gradtx._torch_checks import Target
from gradtx._torch_checks import plain
from gradtx._torch_table import EpsPair
from gradtx._torch_table import Pair
from gradtx._torch_table import Scalar
from gradtx._torch_table import Vector
from gradtx._torch_table import numpy_of

DRIFT = 16
"""Roundings of a double per step that torch's recursive schedulers may drift from the
closed form (measured: at most about 8 per step, CosineAnnealingLR cycling past T_max)."""


_DOUBLE_EPS = float(np.finfo(np.float64).eps)


WANT = {
    Scalar: "a real number",
    Pair: "a pair of real numbers",
    Vector: "a tuple of real numbers",
    EpsPair: "a pair (eps1 or None, eps2) of real numbers",
}
"""What torch keeps for a param-group key, by the codec that reads it."""


def real(x: Any) -> float | None:
    """``x`` as a float where it is a real number as torch keeps one: a Python or NumPy
    number, or a one-element tensor (torch takes ``lr=torch.tensor([0.1])``); ``None``
    for anything else (a string, a bool, None, a complex number, a tuple)."""
    array = None if isinstance(x, (tuple, list)) else numpy_of(x)
    if array is None or array.dtype.kind not in "iuf" or array.size != 1:
        return None
    return float(array.reshape(()))


def group_numbers(t: Target, j: int, group: Mapping[str, Any]) -> dict[str, Any]:
    """Param group ``j`` with its hyperparameters as Python floats; a ``TypeError`` where
    one is not the numbers torch keeps (a string, a bool or None read as a number, a
    short tuple as a pair).  A missing key is ``check_group``'s error."""
    out = dict(group)
    for key, codec in t.entry.hyperparams.items():
        if key not in group:
            continue
        value, scalar = group[key], isinstance(codec, Scalar)
        items = [value] if scalar else list(value) if isinstance(value, (tuple, list)) else []
        numbers = [real(x) for x in items]
        size = 1 if scalar else len(items) if type(codec) is Vector else 2
        # Adafactor's eps is (eps1 or None, eps2)
        none = [n == 0 and x is None and type(codec) is EpsPair for n, x in enumerate(items)]
        bad = [r is None and not ok for r, ok in zip(numbers, none)]
        if not items or len(items) != size or any(bad):
            raise TypeError(
                f"{SD}: param group {j} has {key}={value!r}; torch.optim."
                f"{t.entry.torch_class} keeps {WANT[type(codec)]} there"
            )
        out[key] = numbers[0] if scalar else tuple(numbers)
    return out


def value_at(t: Target, hs: HyperparamsState, name: str, ahead: int = 0) -> Any:
    """Hyperparameter ``name`` as the next update applies it (``None``: a left-out stage),
    or with ``ahead`` the update that many steps after it."""
    if name in hs.hyperparams:
        value = hs.hyperparams[name]
        return value(hs.count + ahead) if is_schedule(value) else value
    if shown_key(name) in hs.python_schedules:
        kept = hs.python_schedules[shown_key(name)]
        return jnp.asarray(t.args[name](hs.count + ahead), kept.dtype) if ahead else kept
    return t.args.get(name)  # a bound JAX array, or None


def step_after(count: int) -> int:
    """The step after ``count``: the same at the int32 maximum, where the count saturates."""
    return min(count + 1, _dtypes.INT32_MAX)


def _atol(have: Any, want: Any, group: Mapping[str, Any], name: str, count: int) -> float:
    """How far a schedule's value may be from torch's: a few roundings of the schedule's
    dtype at the scale of its values (a float32 cosine near its end is off by about
    eps * initial_lr, a large relative error), and the drift of torch's recursive
    schedulers, a few roundings of a double per step taken.  No relative tolerance: a
    schedule one step off torch's (T_max + 1) is 1e-8 away, and must be refused."""
    initial = plain(group.get("initial_lr", 0.0)) if name == "learning_rate" else 0.0
    scale = max(
        float(np.max(np.abs(want))), abs(initial) if isinstance(initial, (int, float)) else 0.0
    )
    eps = 8 * float(np.finfo(numpy_of(have).dtype).eps) + DRIFT * count * _DOUBLE_EPS
    return eps * scale


def _equal_in_double(
    t: Target, name: str, want: Any, group: Mapping[str, Any], count: int
) -> bool | None:
    """Whether the schedule given for ``name``, evaluated in float64 at ``count``, is
    torch's value (``None``: no schedule to evaluate so, no verdict).  This decides
    where it can: a float32 schedule's own rounding can put it farther from torch's
    doubles than a few of its roundings (a rate raised to the step count compounds
    it: docs/schedules.md), and float32's tolerance would take a cosine one step
    longer than torch's; the import then continues from gradtx's float32 value."""
    given = t.made.arguments.get(name)
    if given is None or not callable(given):
        return None
    with jax.enable_x64(True):
        # An optax schedule or a plain callable gets an int64 count: with int32, optax's
        # count / steps stays float32 under x64.
        count_in = jnp.asarray(count, jnp.int32) if is_schedule(given) else jnp.asarray(count)
        try:
            value = np.asarray(given(count_in))
        except Exception:  # a callable that does not run eagerly in float64: no verdict
            return None
    if not np.issubdtype(value.dtype, np.floating):  # a callable returning an int
        value = value.astype(np.float64)
    # the tolerance of the dtype it computes in (float32 constants keep it in float32)
    atol = _atol(value, want, group, name, count)
    return bool(np.allclose(value.astype(np.float64), want, rtol=0, atol=atol))


def _rate_read_once(t: Target, key: str) -> bool:
    """torch's Rprop reads its ``lr`` at its first step only (the step sizes start
    there); a scheduler's later rates change nothing there, where gradtx rescales."""
    return key == "lr" and t.entry.torch_class == "Rprop"


_AHEAD = sorted({1, 2, 3, 10} | {2**i for i in range(31)})
"""Steps ahead at which a schedule is compared with its value now: the next ones, then
doubling to the count's end, so a step schedule's boundary far ahead (StepLR's every
1000 steps) is seen too."""


def warn_if_rprop_rate_moves(
    where: str, t: Target, hs: HyperparamsState, name: str, key: str
) -> None:
    """Warns where torch's Rprop and gradtx part ways under a schedule: gradtx rescales
    the step sizes when its rate changes, torch's Rprop reads its ``lr`` at its first
    step only (a torch scheduler changes nothing there).  A schedule that holds still
    over the next steps (a constant one) changes nothing, so it passes."""
    if not _rate_read_once(t, key):
        return
    if not (is_schedule(hs.hyperparams.get(name)) or callable(t.args.get(name))):
        return
    now, count = numpy_of(value_at(t, hs, name, 0)), int(hs.count)
    ahead = [k for k in _AHEAD if count + k <= 2**31 - 1]
    if all(np.array_equal(numpy_of(value_at(t, hs, name, k)), now) for k in ahead):
        return
    if where == SD:
        advice = "to go on as torch does, give a constant learning_rate, torch's lr now"
    else:
        advice = (
            "a torch run loaded from this dict keeps its step sizes as they are where "
            "gradtx's rescale at each change of rate, so the two runs part at the next one"
        )
    warnings.warn(
        f"{where}: {t.made.call}'s {name} follows a schedule, and gradtx rescales the "
        "step sizes when it changes, where torch.optim.Rprop reads its lr at its first step "
        f"only (a torch scheduler changes nothing there): {advice}",
        stacklevel=outside_gradtx(),
    )


def _warn_of_a_scheduled_number(
    t: Target, key: str, name: str, codec: Any, group: Mapping[str, Any]
) -> None:
    """A torch scheduler leaves its keys in the group (``initial_lr``: every
    LRScheduler; ``base_momentum``: CyclicLR and OneCycleLR cycling the momentum, or
    Adam's beta1).  Written into a number gradtx keeps fixed, torch's current value
    stays where torch's may go on changing: a finished warm-up's does not, a StepLR's
    does, and the state dict cannot tell them apart, so this warns."""
    marker = {"lr": "initial_lr", "momentum": "base_momentum", "betas": "base_momentum"}
    scheduled = marker.get(key) in group
    if _rate_read_once(t, key):
        return  # torch reads it at its first step only: the number now is exact from here
    if key == "betas":  # only beta1 cycles
        scheduled = scheduled and name == next(iter(codec.to_gradtx(group[key])))
    if not scheduled:
        return
    keys = ", ".join(sorted(set(group) & SCHEDULER))
    warnings.warn(
        f"{SD}: torch's param group holds {marker[key]}: a torch scheduler set its {key} "
        f"({plain(group[key])!r} now), and {t.made.call}'s {name} is a number, which stays "
        f"at that value from here.  If torch's scheduler goes on changing it, give {name} "
        "the scheduler's gradtx schedule (docs/porting_from_pytorch.md); to go on with "
        f"constant values, pass the state dict without the scheduler's keys ({keys}) in "
        "its param groups, which also silences this",
        stacklevel=outside_gradtx(),
    )


def set_from_group(t: Target, hs: HyperparamsState, group: Mapping[str, Any]) -> Any:
    """torch's numbers, stored where gradtx stores numbers (as ``set_hyperparams``); where
    gradtx follows a schedule, a Python callable or a bound array, checked against it."""
    count = int(hs.count)
    python = {
        k: jnp.asarray(t.args[shown_name(k)](hs.count), v.dtype)
        for k, v in hs.python_schedules.items()
    }
    hs = hs._replace(python_schedules=python)  # their values at the count
    numbers, specs = {}, getattr(t.made.factory, "specs", {})
    torch_keys: dict[str, str] = {}  # gradtx's name -> torch's key it came from
    for key, codec in t.entry.hyperparams.items():  # every key is there (check_group)
        for name, want in codec.to_gradtx(group[key]).items():
            have, stored = value_at(t, hs, name), hs.hyperparams.get(name)
            if have is None:
                continue  # a stage neither side has (check_group)
            if getattr(specs.get(name), "init_only", False):
                continue  # a starting value (Adagrad's): torch's buffers already hold it
            if stored is not None and not is_schedule(stored):
                _warn_of_a_scheduled_number(t, key, name, codec, group)
                if np.shape(want) != np.shape(stored):
                    raise ValueError(
                        f"{SD}: torch's {key}={plain(group[key])!r} does not fit "
                        f"{t.made.call}'s {name}, of another form; build it with "
                        f"{name}={plain(group[key])!r}"
                    )
                numbers[name] = want
                torch_keys[name] = key
                continue
            # torch's value for the step after next (ASGD's lr): the next step's is the
            # hook's to check, but at step 0, where torch's first step uses this value too
            late = t.entry.late.get(name)
            warn_if_rprop_rate_moves(SD, t, hs, name, key)  # at step 0 too: torch takes it then
            steps = [count]
            if late:
                steps = [0, 1] if count == 0 else [step_after(count)]
            for at in steps:
                have = value_at(t, hs, name, at - count)
                verdict = _equal_in_double(t, name, want, group, at)
                if verdict is None:
                    atol = _atol(have, want, group, name, at)
                    verdict = bool(np.allclose(numpy_of(have), want, rtol=0, atol=atol))
                if verdict:
                    continue
                where = f"{t.made.call}'s {name} is {numpy_of(have)} at step {at}"
                if isinstance(t.args.get(name), jax.Array):
                    raise ValueError(
                        f"{SD}: torch's {key}={plain(group[key])!r} but {where}, a JAX "
                        "array bound into the optimizer, not kept in its state (docs/design.md),"
                        f" so torch's value cannot be written there: build it with {name}="
                        f"{plain(group[key])!r}, a Python number"
                    )
                if late:
                    raise ValueError(
                        f"{SD}: torch's {key}={plain(group[key])!r} but {where}, which must "
                        f"be torch's {key}: {late}"
                    )
                if name != "learning_rate":
                    raise ValueError(f"{SD}: torch's {key}={plain(group[key])!r} but {where}")
                raise ValueError(
                    f"{SD}: torch's lr={want} but {where}: the torch scheduler's position "
                    "differs from the optimizer's step count (a scheduler stepped once per "
                    "epoch?). A gradtx schedule is a function of the optimizer step: give one "
                    f"that reaches {want} at step {count}, or a constant learning rate"
                    + (
                        ""
                        if t.entry.step
                        else f"; torch.optim.{t.entry.torch_class} keeps no step count, so "
                        "pass step=, the optimizer steps taken"
                    )
                    + (
                        "; a float32 schedule is also compared in float64, from its numbers "
                        "as given: give them as Python floats, not float32 arrays"
                        if numpy_of(have).dtype == np.float32
                        else ""
                    )
                )
    try:
        return set_hyperparams(hs, numbers)
    except (ValueError, TypeError):
        for name, want in numbers.items():  # name torch's value that gradtx refuses
            try:
                set_hyperparams(hs, {name: want})
            except (ValueError, TypeError) as err:
                key = torch_keys[name]
                reason = str(err).split("): ", 1)[-1]
                raise ValueError(
                    f"{SD}: torch's {key}={plain(group[key])!r} ({t.made.call}'s {name}) "
                    f"is outside what gradtx takes: {reason}"
                ) from None
        raise
