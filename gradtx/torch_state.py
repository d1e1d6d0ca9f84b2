"""Continue a PyTorch run in JAX, and back: torch optimizer state dicts <-> gradtx states.

torch's parameter ``i`` (its index in ``state_dict()["param_groups"][g]["params"]``,
numbered across the groups in order) is leaf ``i`` of ``jax.tree.leaves(params)``; a
dict holding some of the groups (one group of a ``gradtx.partition``) maps its indices,
in increasing order, to the leaves.
Which torch class a gradtx optimizer is comes from the optimizer object (the
factory call it records, ``gradtx._factory.made_by``), what each key means
from the table ``gradtx._torch_table.TABLE``; the checks that the two
describe one optimizer are in ``gradtx._torch_checks``.  Only ``to_torch_state_dict``
imports torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _dtypes
from gradtx import _state_checks
from gradtx import _update_checks
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import is_schedule
from gradtx._factory import HyperparamsState
from gradtx._factory import shown_key
from gradtx._factory import shown_name
from gradtx._hyperparams import set_hyperparams
from gradtx._specs import Hyper
from gradtx._torch_checks import FROM
from gradtx._torch_checks import SD
from gradtx._torch_checks import TO
from gradtx._torch_checks import Target
from gradtx._torch_checks import averaged_keys
from gradtx._torch_checks import check_arguments
from gradtx._torch_checks import check_flat_order
from gradtx._torch_checks import check_group
from gradtx._torch_checks import plain
from gradtx._torch_checks import same
from gradtx._torch_checks import target
from gradtx._torch_checks import with_later_keys
from gradtx._torch_table import HOOKS
from gradtx._torch_table import EpsPair
from gradtx._torch_table import Pair
from gradtx._torch_table import Scalar
from gradtx._torch_table import Vector
from gradtx._torch_table import find_node
from gradtx._torch_table import map_nodes
from gradtx._torch_table import numpy_of
from gradtx.wrappers.averaging import AverageParamsState

PARAMS = f"{FROM}(params=...)"
FROZEN = (
    "a parameter torch never steps (requires_grad=False) has no state: make it a None leaf "
    "of params and leave its index out of the groups' params, "
    "dict(state_dict, param_groups=[dict(g, params=[i for i in g['params'] if i != k]) for g "
    "in state_dict['param_groups']]), and its name out of the groups' param_names where "
    "they have them"
)
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


def _real(x: Any) -> float | None:
    """``x`` as a float where it is a real number as torch keeps one: a Python or NumPy
    number, or a one-element tensor (torch takes ``lr=torch.tensor([0.1])``); ``None``
    for anything else (a string, a bool, None, a complex number, a tuple)."""
    array = None if isinstance(x, (tuple, list)) else numpy_of(x)
    if array is None or array.dtype.kind not in "iuf" or array.size != 1:
        return None
    return float(array.reshape(()))


def _numbers(t: Target, j: int, group: Mapping[str, Any]) -> dict[str, Any]:
    """Param group ``j`` with its hyperparameters as Python floats; a ``TypeError`` where
    one is not the numbers torch keeps (a string, a bool or None read as a number, a
    short tuple as a pair).  A missing key is ``check_group``'s error."""
    out = dict(group)
    for key, codec in t.entry.hyperparams.items():
        if key not in group:
            continue
        value, scalar = group[key], isinstance(codec, Scalar)
        items = [value] if scalar else list(value) if isinstance(value, (tuple, list)) else []
        numbers = [_real(x) for x in items]
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


def _current(t: Target, hs: HyperparamsState, name: str, ahead: int = 0) -> Any:
    """Hyperparameter ``name`` as the next update applies it (``None``: a left-out stage),
    or with ``ahead`` the update that many steps after it."""
    if name in hs.hyperparams:
        value = hs.hyperparams[name]
        return value(hs.count + ahead) if is_schedule(value) else value
    if shown_key(name) in hs.python_schedules:
        kept = hs.python_schedules[shown_key(name)]
        return jnp.asarray(t.args[name](hs.count + ahead), kept.dtype) if ahead else kept
    return t.args.get(name)  # a bound JAX array, or None


# One rule both ways, though SGD's, ASGD's and Rprop's states would carry over.
_COMPLEX = (
    "complex params are not supported (torch's adaptive optimizers keep their statistics "
    "per real and imaginary part, gradtx's per element)"
)


def _after(count: int) -> int:
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


def _set_hyperparams(t: Target, hs: HyperparamsState, group: Mapping[str, Any]) -> Any:
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
            have, stored = _current(t, hs, name), hs.hyperparams.get(name)
            if have is None:
                continue  # a stage neither side has (check_group)
            if getattr(specs.get(name), "init_only", False):
                continue  # a starting value (Adagrad's): torch's buffers already hold it
            if stored is not None and not is_schedule(stored):
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
            steps = [count]
            if late:
                steps = [0, 1] if count == 0 else [_after(count)]
            for at in steps:
                have = _current(t, hs, name, at - count)
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


def _buffers_in(
    t: Target, hs: HyperparamsState, params: Any, states: dict[int, dict], index: list[int]
) -> Any:
    """The buffers of ``states`` (keyed by leaf) in the inner state; ``index[i]`` is torch's
    index of leaf ``i``, for the messages."""
    inner = hs.inner_state
    leaves, treedef = jax.tree.flatten(params)
    td: Any = treedef
    known = {*t.entry.buffers, *t.entry.hook_keys, *(("step",) if t.entry.step else ())}
    for i, s in states.items():
        if unknown := sorted(set(s) - known):
            raise ValueError(
                f"{SD}: torch's state of parameter {index[i]} has {unknown}, which torch.optim."
                f"{t.entry.torch_class} does not keep (a state dict of another class?)"
            )
        for key, value in s.items():  # L-BFGS keeps lists of tensors
            kinds = {str(getattr(x, "dtype", type(x).__name__)) for x in _listed(value)}
            if complex_kinds := sorted(k for k in kinds if "complex" in k):
                raise ValueError(
                    f"{SD}: torch's state of parameter {index[i]} has a complex {key} "
                    f"({complex_kinds[0]}), but the params are real (copying it would drop "
                    "its imaginary part)"
                )
    for key, buf in t.entry.buffers.items():
        holders = [i for i, s in states.items() if key in s]
        node = find_node(inner, buf.state)
        value = None if node is None else getattr(node, buf.field)
        if value is None and holders:
            raise ValueError(
                f"{SD}: torch's state of parameter {index[holders[0]]} has {key!r}, which "
                f"{t.made.call}(...) keeps no buffer for"
            )
        kept = value is not None and bool(jax.tree.leaves(value))  # not a tree of Nones
        if kept and not holders and states:
            if any(buf.applies(np.ndim(p)) for p in leaves):
                raise ValueError(
                    f"{SD}: torch's state has no {key!r}, which {t.made.call}(...) keeps "
                    f"(its {buf.state.__name__}.{buf.field}); build the optimizer with the "
                    "options torch's run had"
                )
        if value is None or not holders:
            continue
        if buf.scalar:  # one number, repeated in torch's per-parameter states
            value = jnp.asarray(numpy_of(states[holders[0]][key]), value.dtype)
        else:
            parts = td.flatten_up_to(value)
            for i, p in enumerate(leaves):
                if not buf.applies(np.ndim(p)):
                    continue
                if key not in states[i]:
                    raise ValueError(f"{SD}: torch's state of parameter {index[i]} has no {key!r}")
                arr = numpy_of(states[i][key])
                if arr.shape != parts[i].shape:
                    raise ValueError(
                        f"{PARAMS}: parameter {index[i]}: torch's {key} has shape {arr.shape}, but leaf "
                        f"{i} of params has shape {np.shape(p)} (its {key}: {parts[i].shape})"
                    )
                parts[i] = jnp.asarray(arr, parts[i].dtype)
            value = td.unflatten(parts)
        inner = map_nodes(inner, buf.state, _setter(buf.field, value))
        if buf.filled is not None and getattr(node, buf.filled) is not None:
            inner = map_nodes(inner, buf.state, _setter(buf.filled, jnp.ones([], jnp.bool_)))
    return inner


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _setter(field: str, value: Any) -> Any:
    return lambda node: node._replace(**{field: value})


def _step_of(value: Any, k: int) -> float:
    """torch's ``step`` in the state of its parameter ``k``: a whole number of steps that
    gradtx's int32 count holds (2.5 was read as 2, -1 as -1, 1e10 overflowed)."""
    step = _real(value)
    if step is None or not (step.is_integer() and 0 <= step <= _dtypes.INT32_MAX):
        raise ValueError(
            f"{SD}: torch's state of parameter {k} has step={value if step is None else step!r}, "
            f"not a number of steps taken (a whole number in [0, {_dtypes.INT32_MAX}], "
            "gradtx's int32 count)"
        )
    return step


def _count(t: Target, states: dict[int, dict], step: int | None, index: list[int]) -> int:
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer))):
        raise TypeError(f"{FROM}(step={step!r}): step must be an int or None")
    if step is not None and not 0 <= step <= _dtypes.INT32_MAX:
        raise ValueError(f"{FROM}(step={step}): step must be in [0, {_dtypes.INT32_MAX}]")
    if not t.entry.step:
        if states and step == 0:
            raise ValueError(
                f"{FROM}(step=0): torch's state for torch.optim.{t.entry.torch_class} shows "
                "steps were taken (it makes its state at the first step); pass their number"
            )
        if states and step is None:
            raise ValueError(
                f"{FROM}(step=None): torch.optim.{t.entry.torch_class} keeps no step count and "
                "its state shows steps were taken; pass step=, the number of optimizer steps "
                "taken (it places the schedules and the terms that depend on the step)"
            )
        specs = getattr(t.made.factory, "specs", {})
        # a number given as a schedule or a callable (not an option such as mask_fn)
        scheduled = sorted(
            k for k, v in t.args.items() if isinstance(specs.get(k), Hyper) and callable(v)
        )
        if step is None and scheduled:
            raise ValueError(
                f"{FROM}(step=None): torch.optim.{t.entry.torch_class} keeps no step count "
                f"(and here no state), so the position of {t.made.call}'s schedule of "
                f"{', '.join(scheduled)} cannot be read; pass step=, the number of optimizer "
                "steps taken (0 at the start)"
            )
        if step is None and t.average is not None and _averaging_window(t) != (0, 1):
            raise ValueError(
                f"{FROM}(step=None): torch.optim.{t.entry.torch_class} keeps no step count "
                "(and here no state), so where gradtx.average_params' start and every place "
                "the next averages cannot be read; pass step=, the number of optimizer steps "
                "taken (0 at the start)"
            )
        return 0 if step is None else int(step)
    if any("step" not in s for s in states.values()):
        raise ValueError(
            f"{SD}: a parameter's state has no 'step', which torch.optim."
            f"{t.entry.torch_class} keeps (a state dict of another class?)"
        )
    counts = sorted({_step_of(s["step"], index[i]) for i, s in states.items()})
    if not counts and step:
        raise ValueError(
            f"{FROM}(step={step}): torch's state is empty, so no step was taken "
            f"(torch.optim.{t.entry.torch_class} makes its state at the first step)"
        )
    if len(counts) > 1:
        # Adagrad makes every state at construction: a frozen parameter's stays at step 0
        frozen = (
            f"; a parameter at step 0 is one torch never stepped: {FROZEN}" if 0 in counts else ""
        )
        raise ValueError(f"{SD}: torch's parameters have taken different steps {counts}{frozen}")
    count = int(counts[0]) if counts else (step or 0)
    if step is not None and step != count:
        raise ValueError(f"{FROM}(step={step}): torch's state says {count} steps were taken")
    return count


def _averaging_window(t: Target) -> tuple[Any, Any]:
    """``(start, every)`` of the ``gradtx.average_params`` around the optimizer."""
    assert t.average is not None
    return t.average.arguments.get("start", 0), t.average.arguments.get("every", 1)


def _check_n_averaged(t: Target, count: int, n: int) -> None:
    """torch's ``n_averaged`` is the number of averages ``average_params`` makes in
    ``count`` steps (the ``t > start`` with ``t - start - 1`` a multiple of ``every``)."""
    start, every = _averaging_window(t)
    if not all(isinstance(x, (int, np.integer)) for x in (start, every)):
        return  # bound JAX arrays: data, not checked
    expected = 0 if count <= start else (count - start - 1) // every + 1
    if n != expected:
        raise ValueError(
            f"{FROM}(averaged_model_state_dict=...): n_averaged is {n}, but "
            f"gradtx.average_params(start={start}, every={every}) averages {expected} times "
            f"in {count} steps; build it with the start and every that torch's run used"
        )


def _torch_names_of(paths: list, names: list) -> list | None:
    """The torch name each leaf's path spells, when every leaf's does: the path's keys
    joined by dots (``{"ln": {"weight": ...}}`` → ``ln.weight``), equal to one of
    torch's ``param_names`` or ending in ``.`` and it (a prefix such as Flax's
    ``params``), each name once.  None where the paths do not spell them."""
    if None in names or len(set(names)) != len(names):
        return None
    spelt = []
    for path in paths:
        parts = []
        for k in path:
            part = getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
            if not isinstance(part, (str, int)):
                return None
            parts.append(str(part))
        joined = ".".join(parts)
        match = [joined] if joined in names else [n for n in names if joined.endswith("." + n)]
        if len(match) != 1:
            return None
        spelt.append(match[0])
    return spelt if len(set(spelt)) == len(spelt) else None


def _group_and_states(t: Target, state_dict: Mapping[str, Any], params: Any) -> tuple:
    """The param group, after checking that every group agrees and that torch's
    parameters are the params' leaves; the non-empty per-parameter states, keyed by
    leaf; and torch's index of each leaf."""
    if not isinstance(state_dict, Mapping) or {"state", "param_groups"} - set(state_dict):
        raise TypeError(
            f"{SD}: expected torch_optimizer.state_dict(), a mapping with 'state' and "
            f"'param_groups', got {type(state_dict).__name__}"
        )
    groups = list(state_dict["param_groups"])
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    ids = [*(i for g in groups for i in g["params"]), *state_dict["state"]]
    named = [i for i in ids if not str(i).isdigit()]  # ints, numpy ints, "0" are indices
    if named:
        raise TypeError(
            f"{SD}: the state dict keys its parameters by name ({named[0]!r}, ...), as "
            "torch.distributed.checkpoint's get_optimizer_state_dict and FSDP's "
            "optim_state_dict write it; pass torch_optimizer.state_dict(), which numbers them"
        )
    indices = [int(i) for g in groups for i in g["params"]]
    if len(indices) != len(paths):
        partial = sorted(indices) != list(range(len(indices)))  # some groups of a larger dict
        raise ValueError(
            f"{PARAMS}: the state dict's param groups hold {len(indices)} parameters, params "
            f"{len(paths)} leaves (torch's parameters, in index order, are the leaves of "
            "jax.tree.leaves(params))"
            + (
                f"; for the group(s) of parameters {sorted(indices)}, give the params with "
                "the other groups' leaves replaced by gradtx.MaskedNode(), as partition does"
                if partial
                else ""
            )
            + (f"; {FROZEN}" if len(indices) > len(paths) else "")
        )
    if len(set(indices)) != len(indices):
        again = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"{SD}: the param groups list parameter indices {again} more than once")
    # torch's indices in increasing order are the leaves: 0..n-1 for a whole state dict,
    # any k indices for one group taken out of a larger one (a group of a partition)
    leaf = {i: n for n, i in enumerate(sorted(indices))}
    groups = [_numbers(t, j, g) for j, g in enumerate(groups)]
    for j, g in enumerate(groups[1:], start=1):
        for key in [*t.entry.hyperparams, *t.entry.flags]:
            ours, theirs = plain(groups[0].get(key)), plain(g.get(key))
            if not same(ours, theirs):
                raise ValueError(
                    f"{SD}: param groups 0 and {j} differ in {key} ({ours!r}, {theirs!r}), "
                    "and a gradtx optimizer has one set of hyperparameters: use "
                    "gradtx.partition with one optimizer per group and convert each group "
                    'alone, from dict(state_dict, param_groups=[state_dict["param_groups"][g]]) '
                    "with params whose other groups' leaves are gradtx.MaskedNode() (as "
                    'partition hides them); docs/ecosystem.md, "Continuing a PyTorch run"'
                )
    for j, g in enumerate(groups):
        # a name list that lost step with the indices would name every later leaf wrongly
        if "param_names" in g and len(g["param_names"]) != len(g["params"]):
            raise ValueError(
                f"{SD}: param group {j} lists {len(g['params'])} parameters but "
                f"{len(g['param_names'])} param_names; {FROZEN}"
            )
    names = {leaf[int(i)]: n for g in groups for i, n in zip(g["params"], g.get("param_names", ()))}
    order = [names.get(n) for n in range(len(paths))]
    keys = _torch_names_of(paths, order)
    check_flat_order(FROM, t, params, names_checked=keys is not None)
    if keys is not None and keys != order:
        raise ValueError(
            f"{PARAMS}: params' leaves are in the order {keys} (jax.tree.leaves sorts a dict's "
            f"keys), torch's parameters in the order {order} (group by group, as the state "
            "dict numbers them); build params with its leaves in torch's order: a list, or a "
            "collections.OrderedDict of the groups' param_names in that order (model.parameters() "
            "order only where the groups follow the model)"
        )
    # the states of these groups' parameters, by leaf (a state dict of one group may keep
    # the other groups' states: they are not read; the first group's dict cannot be told
    # from a whole one, so states outside the groups are never an error)
    states = {
        leaf[int(i)]: dict(s) for i, s in state_dict["state"].items() if len(s) and int(i) in leaf
    }
    if t.entry.hook != "lbfgs" and states and len(states) != len(paths):
        missing = sorted(indices)[min(set(range(len(paths))) - set(states))]
        raise ValueError(
            f"{SD}: torch's parameter {missing} has no state but others have (its .grad was "
            f"None at every step); gradtx keeps one state for all parameters: {FROZEN}"
        )
    return groups[0], states, sorted(indices)


def from_torch_state_dict(
    optimizer: optax.GradientTransformation,
    params: Params,
    state_dict: Mapping[str, Any],
    *,
    step: int | None = None,
    averaged_model_state_dict: Mapping[str, Any] | None = None,
) -> OptState:
    """The state of a gradtx optimizer that continues a torch run from its state dict.

    Every per-parameter buffer and the step count are copied, and the param
    group's hyperparameters (``lr``, ``betas``, ``eps``, ``weight_decay``,
    ...) are set into the state as ``gradtx.set_hyperparams`` does.  Where
    gradtx takes one from a schedule (or a Python callable), its value at the
    step count must equal torch's, to a few roundings of its dtype (so a
    scheduler stepped once per epoch is an error); ASGD's ``lr`` at the step
    count + 1, since torch's next step uses the ``eta`` it computed from the
    lr before (a torch scheduler's schedule read one step late,
    ``lambda k: s(jnp.maximum(k - 1, 0))``, continues exactly).  Complex params
    are refused: torch's adaptive optimizers keep their statistics per real and
    imaginary part.  Options must agree (``amsgrad``, ``nesterov``, ``centered``,
    ``maximize``, a momentum stage, ...): the ``ValueError`` names both
    values.  Several param groups are accepted when their hyperparameters are
    equal.  Groups that differ are a ``gradtx.partition`` with one optimizer per
    group: convert each group alone, from
    ``dict(state_dict, param_groups=[state_dict["param_groups"][g]])`` with the
    params that partition gives its optimizer (the other groups' leaves
    replaced by ``gradtx.MaskedNode()``); the group's parameter indices, in
    increasing order, are those params' leaves, and the other groups' states
    are not read (``docs/ecosystem.md``, "Continuing a PyTorch run").  Tensors
    are copied with ``np.array(t.detach().cpu())`` (the state does not share
    torch's memory, which its next step overwrites); torch is not imported.

    Args:
      optimizer: the gradtx optimizer (``gradtx.adam(amsgrad=True)``), or
        ``gradtx.average_params`` around one (torch's ``AveragedModel``).
      params: the parameters, a pytree: torch's parameter ``i`` is leaf ``i`` of
        ``jax.tree.leaves(params)`` (for the groups of a partial dict, the ``i``-th
        smallest index).  torch numbers its parameters group after group, in each
        group's ``params`` order: ``model.parameters()`` order for one group made
        from it, not for groups that interleave the model's parameters.  A dict's
        keys are sorted: use a list, or a ``collections.OrderedDict`` (LBFGS, whose
        state is one flat vector, refuses a plain dict unless torch's stored
        ``param_names`` confirm its order).
      state_dict: ``torch_optimizer.state_dict()``.
      step: optimizer steps taken, needed where torch does not record them
        (SGD, Muon, LBFGS) once its state is not empty or when a hyperparameter
        follows a schedule; elsewhere it must equal torch's count.
      averaged_model_state_dict: with ``gradtx.average_params``,
        ``averaged_model.state_dict()``: ``n_averaged`` and the averaged
        parameters in order (``torch.optim.swa_utils.AveragedModel``).

    Returns:
      The state ``optimizer.init(params)`` makes, at torch's step, with its
      buffers and hyperparameters.

    Example:
      >>> import gradtx, numpy as np
      >>> sd = {"state": {0: {"step": 3.0, "exp_avg": np.ones(2), "exp_avg_sq": np.ones(2)}},
      ...       "param_groups": [{"params": [0], "lr": 0.1, "betas": (0.9, 0.99), "eps": 1e-8,
      ...                         "weight_decay": 0, "amsgrad": False, "maximize": False,
      ...                         "decoupled_weight_decay": False}]}
      >>> state = gradtx.from_torch_state_dict(gradtx.adam(), np.zeros(2), sd)
      >>> int(state.count), round(float(gradtx.get_hyperparams(state)["b2"]), 6)
      (3, 0.99)

    References:
      ``torch.optim.Optimizer.state_dict``; ``docs/ecosystem.md``, "Continuing a PyTorch run".
    """
    t = target(FROM, optimizer, averaged_model_state_dict)
    leaves, treedef = jax.tree.flatten(params)
    treedef = cast(Any, treedef)
    leaves = [x if isinstance(x, jax.Array) else jnp.asarray(numpy_of(x)) for x in leaves]
    if any(jnp.iscomplexobj(x) for x in leaves):
        raise TypeError(f"{PARAMS}: {_COMPLEX}")
    tree = treedef.unflatten(leaves)
    group, states, index = _group_and_states(t, state_dict, tree)
    group = with_later_keys(t, group)
    check_group(t, group)
    check_arguments(FROM, t, {})
    state = optimizer.init(tree)
    hs = state if t.average is None else state.inner_state.inner_state
    count = _count(t, states, step, index)
    hs = _set_hyperparams(t, hs._replace(count=jnp.asarray(count, jnp.int32)), group)
    inner = _buffers_in(t, hs, tree, states, index)
    if t.entry.hook is not None:
        current = lambda name: numpy_of(_current(t, hs, name))  # noqa: E731
        inner = HOOKS[t.entry.hook][0](inner, states, current, count, SD)
    hs = hs._replace(inner_state=inner)
    if averaged_model_state_dict is None:
        return hs
    sd = averaged_model_state_dict
    kept = jax.tree.leaves(state.inner_state.averaged)  # its dtypes (float32 for 16-bit params)
    parts = [jnp.asarray(numpy_of(sd[k]), a.dtype) for k, a in zip(averaged_keys(FROM, sd, leaves), kept)]  # fmt: skip
    if t.entry.step or step is not None:  # else averaging every step (see _count)
        _check_n_averaged(t, count, int(numpy_of(sd["n_averaged"])))
    n = jnp.asarray(int(numpy_of(sd["n_averaged"])), jnp.int32)
    return state._replace(inner_state=AverageParamsState(hs.count, n, treedef.unflatten(parts), hs))


class _Convert:
    """Arrays as torch tensors: buffers keep their dtype (bfloat16 goes through float32;
    ``load_state_dict`` casts to the parameter's), scalars take torch's scalar dtype."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        float64 = torch.get_default_dtype() == torch.float64
        self.dtype = torch.float64 if float64 else torch.float32

    def tensor(self, x: Any) -> Any:
        x = np.asarray(x)
        return self.torch.from_numpy(np.array(x if x.dtype.itemsize > 2 else x.astype(np.float32)))

    def scalar(self, x: Any) -> Any:
        return self.torch.tensor(float(np.asarray(x)), dtype=self.dtype)


def to_torch_state_dict(
    optimizer: optax.GradientTransformation,
    state: OptState,
    params: Params,
    *,
    averaged_model_state_dict: Mapping[str, Any] | None = None,
) -> Any:
    """A torch state dict that continues a gradtx run in ``torch.optim``.

    ``torch_optimizer.load_state_dict(result)`` takes it for an optimizer of
    the matching class (``torch.optim.Adam`` for ``gradtx.adam``, ...) made
    over the same parameters in one param group, in ``jax.tree.leaves``
    order; its next steps are gradtx's.  The param group holds the current
    hyperparameters (a schedule's value at the step count; ASGD's ``lr`` at
    the step count + 1, which torch reads into the ``eta`` of the step after
    next) and torch's defaults for ``foreach``, ``fused``, ``capturable`` and
    ``differentiable``, which are not state (``load_state_dict`` replaces the
    whole param group: an optimizer made with ``fused=True`` runs unfused after
    it unless the flag is set again on its group).  To follow a schedule on, make
    the torch scheduler as in a fresh run (optimizer made with the base rate,
    then the scheduler), then load this dict and set
    ``scheduler.last_epoch = step``.  That places the schedulers whose position
    is ``last_epoch`` alone (StepLR, MultiStepLR, LinearLR, ExponentialLR,
    CosineAnnealingLR, ConstantLR, PolynomialLR, CyclicLR); not the others:
    CosineAnnealingWarmRestarts keeps ``T_cur``, SequentialLR and ChainedScheduler
    their members' positions, and OneCycleLR and SWALR keys in the param group
    that this dict replaces (see ``docs/ecosystem.md``).  Making the scheduler with
    ``last_epoch=step - 1`` instead is wrong for StepLR, MultiStepLR and
    LinearLR: their constructor's step applies a factor to the loaded rate a
    second time.  Complex params are refused: torch's adaptive optimizers
    keep their statistics per real and imaginary part.  Imports torch.

    Args:
      optimizer: the gradtx optimizer that made ``state``.
      state: its state.
      params: the parameters (leaf ``i`` is torch's parameter ``i``; for LBFGS a
        list or a ``collections.OrderedDict``, not a plain dict, as its flat state
        shows no order).
      averaged_model_state_dict: with ``gradtx.average_params``, the
        ``state_dict()`` of the ``AveragedModel`` to fill, holding
        ``n_averaged`` and the parameter entries only (in order; they are
        replaced).  For a model with buffers keep ``n_averaged`` and
        ``"module." + name`` for each name of ``model.named_parameters()``,
        and load the result with ``load_state_dict(..., strict=False)``,
        which leaves the buffers as they are.

    Returns:
      The optimizer's state dict; with ``gradtx.average_params`` the pair
      ``(optimizer_state_dict, averaged_model_state_dict)``.

    Example:
      >>> import gradtx, jax.numpy as jnp, torch
      >>> opt, params = gradtx.adam(0.1, amsgrad=True), {"w": jnp.zeros(2)}
      >>> sd = gradtx.to_torch_state_dict(opt, opt.init(params), params)
      >>> torch.optim.Adam([torch.zeros(2, requires_grad=True)], amsgrad=True).load_state_dict(sd)

    References:
      ``torch.optim.Optimizer.load_state_dict``; ``docs/ecosystem.md``.
    """
    import torch

    t = target(TO, optimizer, averaged_model_state_dict)
    check_flat_order(TO, t, params, names_checked=False)
    leaves = [numpy_of(x) for x in jax.tree.leaves(params)]
    if any(np.iscomplexobj(x) for x in leaves):
        # torch's adaptive optimizers keep a statistic per real and imaginary part, where
        # gradtx keeps one per element: torch loaded such a state and failed at its step
        raise TypeError(f"{TO}(params=...): {_COMPLEX}")
    expected = _update_checks.probe_init(optimizer.init, jax.tree.map(jnp.asarray, params))
    state = _state_checks.restore_kinds(f"{TO}(state=...)", state, expected)  # as update does
    if not _state_checks.same_layout(state, expected):
        raise ValueError(
            f"{TO}(state=...): not the state {t.made.call}(...).init makes for these params"
            f"\n  expected: {_state_checks.outline(expected)}\n  got: {_state_checks.outline(state)}"
        )
    hs = state if t.average is None else state.inner_state.inner_state
    check_arguments(TO, t, hs.hyperparams)
    count, convert = int(hs.count), _Convert(torch)
    values = {}
    for name in (n for c in t.entry.hyperparams.values() for n in c.names):
        late = t.entry.late.get(name)
        have = _current(t, hs, name, _after(count) - count if late else 0)
        if late and count == 0 and have is not None:
            first = numpy_of(_current(t, hs, name))
            if not np.array_equal(first, numpy_of(have)):
                raise ValueError(
                    f"{TO}(state=...): {t.made.call}'s {name} is {first} at step 0 and "
                    f"{numpy_of(have)} at step 1, which torch takes from one lr: {late}"
                )
        values[name] = t.entry.stages.get(name) if have is None else numpy_of(have)
    sig = inspect.signature(getattr(torch.optim, t.entry.torch_class).__init__).parameters
    group = {k: p.default for k, p in sig.items() if k not in ("self", "params")}
    group |= {key: codec.to_torch(values) for key, codec in t.entry.hyperparams.items()}
    for key, name in t.entry.flags.items():
        resolve = t.entry.resolve.get(name)
        group[key] = resolve(t.args) if t.args[name] is None and resolve else t.args[name]
    group["params"] = list(range(len(leaves)))
    out: dict[int, dict[str, Any]] = {i: {} for i in range(len(leaves))}
    inner = hs.inner_state
    if t.entry.hook is not None:
        current = lambda name: numpy_of(_current(t, hs, name))  # noqa: E731
        inner = HOOKS[t.entry.hook][1](inner, out, current, count, convert)
    for key, buf in t.entry.buffers.items() if count > 0 or t.entry.eager else ():
        node = find_node(inner, buf.state)
        value = None if node is None else getattr(node, buf.field)
        if value is None:
            continue
        if buf.filled is not None and getattr(node, buf.filled) is not None:
            if not bool(getattr(node, buf.filled)):
                continue  # torch makes the buffer at its first step that fills it
        parts = [value] * len(leaves) if buf.scalar else jax.tree.leaves(value)
        for i, (p, x) in enumerate(zip(leaves, parts)):
            if buf.applies(p.ndim):
                out[i][key] = convert.scalar(x) if buf.scalar else convert.tensor(x)
    for s in out.values() if t.entry.step and (count > 0 or t.entry.eager) else ():
        s["step"] = int(count) if t.entry.int_step else convert.scalar(count)
    result = {"state": {i: s for i, s in out.items() if s}, "param_groups": [group]}
    if averaged_model_state_dict is None:
        return result
    avg, filled = state.inner_state, dict(averaged_model_state_dict)
    filled["n_averaged"] = torch.tensor(int(avg.n_averaged), dtype=torch.long)
    for k, x in zip(averaged_keys(TO, filled, leaves), jax.tree.leaves(avg.averaged)):
        filled[k] = convert.tensor(x).to(filled[k].dtype)
    return result, filled
