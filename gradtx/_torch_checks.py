"""Checks that a gradtx optimizer and a torch state dict describe one optimizer.

Shared by ``from_torch_state_dict`` and ``to_torch_state_dict`` (``gradtx.torch_state``):
which torch class a gradtx optimizer is, whether its arguments are ones that class
has, whether a param group's keys and options match, and which entries of an
``AveragedModel`` state dict are the averaged parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import numpy as np
from jax.tree_util import DictKey

from gradtx._base import is_schedule
from gradtx._factory_state import FactoryCall
from gradtx._factory_state import made_by
from gradtx._torch_table import TABLE
from gradtx._torch_table import Entry
from gradtx._torch_table import Pair
from gradtx._torch_table import Scalar
from gradtx._torch_table import numpy_of

FROM, TO = "gradtx.from_torch_state_dict", "gradtx.to_torch_state_dict"
SD = f"{FROM}(state_dict=...)"  # what torch's state dict holds is wrong for the optimizer
PARAMS = f"{FROM}(params=...)"
FROZEN = (
    "a parameter torch never steps (requires_grad=False) has no state: make it a None leaf "
    "of params and leave its index out of the groups' params, "
    "dict(state_dict, param_groups=[dict(g, params=[i for i in g['params'] if i != k]) for g "
    "in state_dict['param_groups']]), and its name out of the groups' param_names where "
    "they have them"
)


IMPLEMENTATION = {"params", "param_names", "foreach", "fused", "capturable", "differentiable"}
"""Param-group keys that are not state: how torch runs, and which tensors it holds."""


SCHEDULER = {"initial_lr", "swa_lr", "max_lr", "min_lr", "base_momentum", "max_momentum"}
"""Param-group keys torch's schedulers add (``LRScheduler``, ``SWALR``; ``CyclicLR`` and
``OneCycleLR`` their bounds): not state.  The lr and momentum they set are, and are
checked against the gradtx schedule at the step count."""

TORCH_KEYS = frozenset(k for e in TABLE.values() for k in (*e.hyperparams, *e.flags))
"""Every param-group key of a torch optimizer gradtx continues; any other is a user's."""


def plain(v: Any) -> Any:
    """A param-group value with tensors as Python numbers (to compare and to print)."""
    if isinstance(v, (tuple, list)):
        return type(v)(plain(x) for x in v)
    return float(numpy_of(v)) if hasattr(v, "detach") or isinstance(v, np.ndarray) else v


def show(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else repr(v)  # float32 state: 1e-08, not 9.99e-09


def same(a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a is b or (isinstance(a, str) and a == b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    try:
        return bool(np.array_equal(np.asarray(a, float), np.asarray(b, float)))
    except (TypeError, ValueError):  # functions, schedules
        return a is b


class Target(NamedTuple):
    made: FactoryCall  # the optimizer torch.optim has
    entry: Entry
    args: dict[str, Any]  # its arguments, with the options its factory implies
    average: FactoryCall | None  # gradtx.average_params around it (torch's AveragedModel)


def target(call: str, optimizer: Any, averaged_model_state_dict: Any) -> Target:
    made, average = made_by(optimizer), None
    if made is not None and made.call == "gradtx.average_params":
        average, made = made, made_by(made.arguments["inner"])
        if made is None:
            inner = type(average.arguments["inner"]).__name__
            raise TypeError(
                f"{call}(optimizer=gradtx.average_params(...)): its inner optimizer is not "
                f"one gradtx call with a torch.optim class (got {inner}: a chain, a "
                "partition, ...), so neither its state nor the average converts in one "
                "piece: convert the inner optimizer's parts as for a chain or a partition "
                "(docs/ecosystem.md, 'Continuing a PyTorch run'), then build the state as "
                "gradtx.AverageParamsState(step, n_averaged, averaged, inner_state) from "
                "AveragedModel's n_averaged and its entries in the params' structure"
            )
    if made is None:
        raise TypeError(
            f"{call}(optimizer=...): expected an optimizer as a gradtx call such as "
            f"gradtx.adam(...) returns it, or gradtx.average_params around one, got "
            f"{type(optimizer).__name__}; chains and other wrappers have no torch.optim class "
            "(a chain: convert its optimizer member and init the others, the chain's state "
            "being theirs in order; a gradtx.partition for torch's param groups converts "
            'group by group: docs/ecosystem.md, "Continuing a PyTorch run")'
        )
    entry = TABLE.get(made.call.removeprefix("gradtx."))
    if entry is None:
        raise ValueError(
            f"{call}(optimizer={made.call}(...)): torch.optim has no {made.call}; these "
            f"have a torch.optim class: {', '.join(sorted(TABLE))}"
        )
    convention = made.arguments.get("convention", "torch")
    if convention != "torch" and "convention" not in entry.free:
        raise ValueError(
            f"{call}(optimizer={made.call}(convention={convention!r})): that is optax's "
            f"rule; a torch.optim.{entry.torch_class} state continues torch's "
            "(convention='torch')"
        )
    if (averaged_model_state_dict is None) != (average is None):
        raise ValueError(
            f"{call}(averaged_model_state_dict=...): give the AveragedModel's state_dict() "
            "exactly when the optimizer is gradtx.average_params(...)"
        )
    return Target(made, entry, {**made.arguments, **entry.implied}, average)


def check_arguments(call: str, t: Target, stored: Mapping[str, Any]) -> None:
    """Each gradtx argument torch has no key for is torch's rule: what the factory makes of
    it when given only the arguments torch has (its default, or one derived from those)."""
    entry, made = t.entry, t.made
    names = {n for c in entry.hyperparams.values() for n in c.names}
    given = set(entry.flags.values()) | {
        n for c in entry.hyperparams.values() if isinstance(c, (Scalar, Pair)) for n in c.names
    }
    reference: Any = made_by(
        made.factory(**{k: v for k, v in made.arguments.items() if k in given})
    )
    for name, value in made.arguments.items():
        if name in names | given | set(entry.implied) | set(entry.free):
            continue
        if name in stored and not is_schedule(stored[name]):
            value = numpy_of(stored[name]).tolist()  # the state's: set_hyperparams may change it
        default = reference.arguments[name]
        if not any(same(value, ok) for ok in (default, *entry.accepted.get(name, ()))):
            hint = (
                "; leaves torch does not decay are a param group of their own there, "
                "weight_decay=0: gradtx.partition with one optimizer per group, each "
                "converted alone (docs/ecosystem.md, 'Continuing a PyTorch run')"
                if name in ("mask", "mask_fn")
                else ""
            )
            raise ValueError(
                f"{call}: the optimizer is {made.call}({name}={show(value)}), which "
                f"torch.optim.{entry.torch_class} does not have: it computes as "
                f"{name}={default!r}{hint}"
            )


LATER = ("maximize", "decoupled_weight_decay")
"""Options torch added to its classes over its versions (``maximize``; Adam's, NAdam's and
RAdam's ``decoupled_weight_decay``): its ``__setstate__`` gives an older state dict's
group each one missing, as False, and so does ``with_later_keys``.  Older options
(``amsgrad``, ``nesterov``) are always written: their absence marks another class."""


def with_later_keys(t: Target, group: Mapping[str, Any]) -> dict[str, Any]:
    """``group`` as torch loads it: a flag an older torch did not write is False."""
    return {**{k: False for k in LATER if k in t.entry.flags and k not in group}, **group}


def check_group(t: Target, group: Mapping[str, Any]) -> None:
    """The keys are the torch class's; options agree (``amsgrad``, ``nesterov``, ...) and
    optional stages exist on both sides."""
    known = set(t.entry.hyperparams) | set(t.entry.flags)
    # A key no torch optimizer has is the user's own (a group's "name"): torch keeps it,
    # and so it tells nothing about the class.
    unknown = sorted((set(group) & TORCH_KEYS) - known - IMPLEMENTATION - SCHEDULER)
    missing = sorted(k for k in known if k not in group)
    if unknown or missing:
        raise ValueError(
            f"{SD}: the param group is not one of torch.optim.{t.entry.torch_class}, which "
            f"{t.made.call}(...) continues: it has {unknown or 'no'} keys that class does not "
            f"have and lacks {missing or 'none'} of its keys (a state dict of another class?)"
        )
    for key, name in t.entry.flags.items():
        ours = t.args[name]
        if ours is None and name in t.entry.resolve:
            ours = t.entry.resolve[name](t.args)
        theirs = group[key]
        if key in t.entry.synonyms:
            theirs, ours = (t.entry.synonyms[key].get(v, v) for v in (theirs, ours))
        if not same(theirs, ours):
            raise ValueError(
                f"{SD}: torch's param group has {key}={theirs!r}, but the optimizer is "
                f"{t.made.call}({name}={ours!r}); build it with {name}={theirs!r}"
            )

    def key_of(name: str) -> str:
        return next(k for k, c in t.entry.hyperparams.items() if c.names == (name,))

    for name, none in t.entry.stages.items():
        key = key_of(name)
        theirs, ours = plain(group[key]), t.args[name]
        need = t.entry.inert.get(name)
        if need and t.args[need] is None and plain(group[key_of(need)]) == t.entry.stages[need]:
            continue  # neither side has the stage it belongs to: torch ignores it
        if ours is None and theirs != none:
            raise ValueError(
                f"{SD}: torch's param group has {key}={theirs!r}, but the optimizer is "
                f"{t.made.call}({name}=None), without that stage; build it with {name}={theirs!r}"
            )
        if ours is not None and theirs == none and name in t.entry.strict:
            raise ValueError(
                f"{SD}: torch's param group has {key}={theirs!r} (no such stage), but the "
                f"optimizer is {t.made.call}({name}={ours!r}); build it with {name}=None"
            )


def averaged_keys(
    call: str, sd: Mapping[str, Any], leaves: list, groups: list | None = None
) -> list[str]:
    """The keys of an AveragedModel state dict's averaged parameters, checked against params:
    picked by name in the optimizer's order where its ``groups`` name their params
    (``param_names``: the model's order need not be the optimizer's, and other entries,
    frozen params or buffers, are left), else all of them in the order given."""
    keys = [k for k in sd if k != "n_averaged"]
    named = [g.get("param_names") for g in groups or ()]
    if "n_averaged" in sd and named and all(n is not None for n in named):
        order = {i: n for g, ns in zip(groups or (), named) for i, n in zip(g["params"], ns)}
        names = [order[i] for i in sorted(order)]
        # AveragedModel(model) prefixes 'module.'; an optimizer of a wrapped model (DDP's
        # .module) names its params with the prefix already.  Entries it does not name
        # (frozen params, buffers) are left.
        for wanted in (["module." + n for n in names], names):
            if set(wanted) <= set(keys):
                return _checked_shapes(call, sd, wanted, leaves)
        raise ValueError(
            f"{call}(averaged_model_state_dict=...): it has no entry for some parameters the "
            f"optimizer's param_names give ({sorted(set('module.' + n for n in names) - set(keys))}"
            f"); its entries: {keys}"
        )
    if "n_averaged" not in sd or len(keys) != len(leaves):
        raise ValueError(
            f"{call}(averaged_model_state_dict=...): expected 'n_averaged' and the {len(leaves)} "
            f"averaged parameters, in model.parameters() order, got {len(keys)} other entries; "
            "for a model with buffers keep n_averaged and 'module.' + each name of "
            "model.named_parameters()"
        )
    return _checked_shapes(call, sd, keys, leaves)


def _checked_shapes(call: str, sd: Mapping[str, Any], keys: list[str], leaves: list) -> list[str]:
    for i, (k, x) in enumerate(zip(keys, leaves)):
        if tuple(np.shape(sd[k])) != tuple(np.shape(x)):
            raise ValueError(
                f"{call}(averaged_model_state_dict=...): parameter {i} ({k}) has shape "
                f"{tuple(np.shape(sd[k]))}, leaf {i} of params {tuple(np.shape(x))}"
            )
    return keys


def _read_sorted(node: Any) -> bool:
    """Whether ``node`` is a mapping that ``jax.tree.leaves`` reads in sorted-key order
    whatever order it was built in (a ``dict``, a Flax ``FrozenDict``): not an
    ``OrderedDict``, and keyed by its own keys (a custom pytree may read otherwise)."""
    if not isinstance(node, Mapping) or isinstance(node, OrderedDict):
        return False
    children = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
    keyed = [p[0].key for p, _ in children if len(p) == 1 and isinstance(p[0], DictKey)]
    return keyed == sorted(node)


def _plain_dicts(params: Any) -> list[tuple[str, Mapping]]:
    """``(path, dict)`` of each dict in ``params``, under any pytree node, that
    ``jax.tree.leaves`` reads in sorted-key order whatever the order it was built in
    (``_read_sorted``), with two or more entries that hold arrays."""
    found: list[tuple[str, Mapping]] = []
    todo: list[tuple[tuple, Any]] = [((), params)]
    while todo:
        path, node = todo.pop(0)
        if _read_sorted(node):
            if sum(bool(jax.tree.leaves(v)) for v in node.values()) > 1:
                found.append(("params" + jax.tree_util.keystr(path), node))
            todo += [((*path, DictKey(k)), v) for k, v in node.items()]
        else:
            below = jax.tree_util.tree_flatten_with_path(
                node, is_leaf=lambda x: x is not node and _read_sorted(x)
            )[0]
            todo += [((*path, *p), x) for p, x in below if _read_sorted(x)]
    return found


def _root(shapes: tuple) -> tuple:
    """The shortest sequence whose repeats make ``shapes`` (two sequences read the same
    in either order exactly when their roots are equal)."""
    n = len(shapes)
    return next(
        shapes[:k] for k in range(1, n + 1) if n % k == 0 and shapes[:k] * (n // k) == shapes
    )


def _same_shapes(node: Mapping) -> tuple[Any, Any, tuple] | None:
    """Two entries of ``node`` whose leaves' shapes read the same in either order (a
    LayerNorm's weight and bias, two equal layers): swapped, no buffer's shape shows it,
    and their order is the sorted keys'."""
    seen: dict[tuple, Any] = {}
    for key in sorted(node, key=str):
        shapes = tuple(np.shape(x) for x in jax.tree.leaves(node[key]))
        if not shapes:
            continue
        root = _root(shapes)
        if root in seen:
            return seen[root], key, shapes
        seen[root] = key
    return None


def _as_built(node: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """``(path, leaf)`` in the order ``params`` was built in: a dict's entries in
    insertion order (``_read_sorted``: ``jax.tree.leaves`` sorts its keys), everything
    else as JAX reads it."""
    if _read_sorted(node):
        return [item for k in node for item in _as_built(node[k], (*path, DictKey(k)))]
    children = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
    if len(children) == 1 and children[0][1] is node:
        return [(path, node)]
    return [item for p, x in children for item in _as_built(x, (*path, *p))]


def _unseen_reorder(params: Any) -> tuple[str, str] | None:
    """Where ``params`` was built in another order than ``jax.tree.leaves`` reads it
    (a dict whose keys were not inserted sorted, as a LayerNorm's ``weight`` before its
    ``bias``) and both orders give the same shapes, so that no buffer's shape shows a
    mismatch: the first leaf read out of place, by its path in each order."""
    read = jax.tree_util.tree_flatten_with_path(params)[0]
    built = _as_built(params)
    if len(built) != len(read):
        return None  # a node that reads otherwise: not judged
    if [np.shape(x) for _, x in read] != [np.shape(x) for _, x in built]:
        return None  # the buffers' shapes tell the orders apart
    for (a, _), (b, _) in zip(read, built):
        if a != b:
            return "params" + jax.tree_util.keystr(a), "params" + jax.tree_util.keystr(b)
    return None


def check_flat_order(call: str, t: Target, params: Any, names_checked: bool) -> None:
    """A dict in ``params`` is read in sorted-key order, which may not be the order torch
    numbers the parameters in.  Buffers' shapes check it where shapes differ; refuse a
    dict whose order nothing checks, unless torch's stored names confirmed it: any dict
    for L-BFGS (one flat vector of every parameter's entries); elsewhere a dict two of
    whose entries hold parameters whose shapes read the same in either order (torch
    numbers a LayerNorm's weight before its bias; sorted, the bias comes first, and
    their moments would be swapped; ``jax.tree.map`` and ``jit`` rebuild a dict sorted,
    so how it was built says nothing), and params built in another order than the
    sorted one with the same shapes in both (a rotation of three entries).
    ``names_checked`` also where no number depends on the order (no per-parameter
    state)."""
    if names_checked or len(jax.tree.leaves(params)) < 2:
        return
    dicts = _plain_dicts(params)
    named = (
        ", or convert the state dict of an optimizer made from model.named_parameters(), "
        "whose names are checked"
        if call == FROM
        else ""
    )
    way = (
        "Give params as a list in torch's order or a collections.OrderedDict of "
        f"model.named_parameters(){named}"
    )
    if t.entry.hook == "lbfgs":
        if dicts:
            raise ValueError(
                f"{call}(params=...): torch's LBFGS keeps one flat vector of all the "
                "parameters' entries, so no shape shows their order, and the dict "
                f"{dicts[0][0]} is read in sorted-key order (jax.tree.leaves), which nothing "
                f"here can check against the order torch numbers the parameters in. {way}"
            )
        return
    for where, node in dicts:
        same = _same_shapes(node)
        if same is not None:
            a, b, shapes = same
            raise ValueError(
                f"{call}(params=...): the dict {where} is read in sorted-key order "
                f"(jax.tree.leaves), and its entries {a!r} and {b!r} hold parameters of the "
                f"same shapes {list(shapes)}, so no buffer's shape shows whether torch "
                "numbers them in that order (a LayerNorm's weight comes before its bias in "
                f"torch; jax.tree.map and jit rebuild a dict sorted). {way}"
            )
    moved = _unseen_reorder(params)
    if moved is not None:
        first, built = moved
        raise ValueError(
            f"{call}(params=...): params were built in another order than jax.tree.leaves "
            f"reads them (it sorts a dict's keys: {first} comes first, where {built} was "
            "put first), and both orders give the same shapes, so no buffer's shape shows "
            "which one torch numbers its parameters in (a LayerNorm's weight comes before "
            f"its bias in torch). {way}"
        )
