"""torch's per-parameter state in a gradtx state: the buffers, the step count and
the number of averages.

Used by ``gradtx.torch_state.from_torch_state_dict``: torch's buffers copied
into the inner state's fields (``buffers_in``, after the table
``gradtx._torch_table.TABLE``), the step count torch's states agree on
(``count_of``) and ``n_averaged`` against ``gradtx.average_params``' window.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx._factory_state import HyperparamsState
from gradtx._specs import Hyper
from gradtx._torch_checks import FROM
from gradtx._torch_checks import FROZEN
from gradtx._torch_checks import PARAMS
from gradtx._torch_checks import SD
from gradtx._torch_checks import Target
from gradtx._torch_hyperparams import real
from gradtx._torch_table import find_node
from gradtx._torch_table import map_nodes
from gradtx._torch_table import numpy_of


def buffers_in(
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
    step = real(value)
    if step is None or not (step.is_integer() and 0 <= step <= _dtypes.INT32_MAX):
        raise ValueError(
            f"{SD}: torch's state of parameter {k} has step={value if step is None else step!r}, "
            f"not a number of steps taken (a whole number in [0, {_dtypes.INT32_MAX}], "
            "gradtx's int32 count)"
        )
    return step


def count_of(t: Target, states: dict[int, dict], step: int | None, index: list[int]) -> int:
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
    steps = {index[i]: _step_of(s["step"], index[i]) for i, s in states.items()}
    counts = sorted(set(steps.values()))
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
        which = "; ".join(
            f"{c:g}: parameters {', '.join(str(k) for k in sorted(steps) if steps[k] == c)}"
            for c in counts
        )
        raise ValueError(
            f"{SD}: torch's parameters have taken different steps {counts} ({which}), and "
            "gradtx steps every leaf at every update with one step count: a parameter "
            "torch skipped at some steps (its .grad None) has no exact port "
            f"(docs/porting_from_pytorch.md){frozen}"
        )
    count = int(counts[0]) if counts else (step or 0)
    if step is not None and step != count:
        raise ValueError(f"{FROM}(step={step}): torch's state says {count} steps were taken")
    return count


def _averaging_window(t: Target) -> tuple[Any, Any]:
    """``(start, every)`` of the ``gradtx.average_params`` around the optimizer."""
    assert t.average is not None
    return t.average.arguments.get("start", 0), t.average.arguments.get("every", 1)


def check_n_averaged(t: Target, count: int, n: int) -> None:
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
