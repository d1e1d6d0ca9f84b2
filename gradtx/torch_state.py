"""Continue a PyTorch run in JAX, and back: torch optimizer state dicts <-> gradtx states.

torch's parameter ``i`` (its index in ``state_dict()["param_groups"][g]["params"]``,
numbered across the groups in order) is leaf ``i`` of ``jax.tree.leaves(params)``; a
dict holding some of the groups (one group of a ``gradtx.partition``) maps its indices,
in increasing order, to the leaves.
Which torch class a gradtx optimizer is comes from the optimizer object (the
factory call it records, ``gradtx._factory_state.made_by``), what each key means
from the table ``gradtx._torch_table.TABLE``; the checks that the two
describe one optimizer are in ``gradtx._torch_checks``, the import of a param group's
numbers in ``gradtx._torch_hyperparams`` and of the per-parameter state (buffers, step
count, averages) in ``gradtx._torch_buffers``.  Only ``to_torch_state_dict`` imports
torch.
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

from gradtx import _state_checks
from gradtx import _update_checks
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._torch_buffers import buffers_in
from gradtx._torch_buffers import check_n_averaged
from gradtx._torch_buffers import count_of
from gradtx._torch_checks import FROM
from gradtx._torch_checks import FROZEN
from gradtx._torch_checks import PARAMS
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
from gradtx._torch_hyperparams import group_numbers
from gradtx._torch_hyperparams import set_from_group
from gradtx._torch_hyperparams import step_after
from gradtx._torch_hyperparams import value_at
from gradtx._torch_hyperparams import warn_if_rprop_rate_moves
from gradtx._torch_table import HOOKS
from gradtx._torch_table import find_node
from gradtx._torch_table import numpy_of
from gradtx.wrappers.averaging import AverageParamsState

_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "swa_lr")
"""Keys torch's schedulers write into a param group (LRScheduler, OneCycleLR, CyclicLR,
SWALR): groups whose numbers agree now but these differ are apart again a step later."""

# One rule both ways, though SGD's, ASGD's and Rprop's states would carry over.
_COMPLEX = (
    "complex params are not supported (torch's adaptive optimizers keep their statistics "
    "per real and imaginary part, gradtx's per element)"
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


def _group_and_states(t: Target, state_dict: Mapping[str, Any], params: Any, given: Any) -> tuple:
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
    groups = [group_numbers(t, j, g) for j, g in enumerate(groups)]
    for j, g in enumerate(groups[1:], start=1):
        for key in [*t.entry.hyperparams, *t.entry.flags, *_SCHEDULER_KEYS]:
            ours, theirs = plain(groups[0].get(key)), plain(g.get(key))
            if not same(ours, theirs):
                later = (
                    " (a scheduler's: the numbers agree now, torch's scheduler moves them apart)"
                    if key in _SCHEDULER_KEYS
                    else ""
                )
                raise ValueError(
                    f"{SD}: param groups 0 and {j} differ in {key} ({ours!r}, {theirs!r}){later}, "
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
    # with no per-parameter state in torch's dict, no number depends on the leaves' order
    read = any(len(x) for x in state_dict["state"].values()) or t.average is not None
    check_flat_order(FROM, t, given, names_checked=keys is not None or not read)  # as built
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
    step count must equal torch's, to a few roundings of its dtype (a torch
    scheduler stepped once per epoch continues into a schedule written per epoch;
    a per-step port of it is an error); ASGD's ``lr`` at the step
    count + 1, since torch's next step uses the ``eta`` it computed from the
    lr before (a torch scheduler's schedule read one step late,
    ``lambda k: s(jnp.maximum(k - 1, 0))``, continues exactly).  Complex params
    are refused: torch's adaptive optimizers keep their statistics per real and
    imaginary part.  Options must agree (``amsgrad``, ``nesterov``, ``centered``,
    ``maximize``, a momentum stage, ...): the ``ValueError`` names both
    values.  A value a torch scheduler set (the group holds its ``initial_lr``,
    or ``base_momentum`` for a cycled momentum) written into a number stays
    there, where torch's may move on: a ``UserWarning`` says so (a schedule
    here takes it silently; so does a dict without those keys, for constant
    values on purpose).  Several param groups are accepted when their
    hyperparameters are equal.  Groups that differ are a ``gradtx.partition`` with one optimizer per
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
        keys are sorted: use a list, or a ``collections.OrderedDict`` (a plain dict
        whose order no shape shows is refused unless torch's stored
        ``param_names`` confirm it: any for LBFGS, whose state is one flat vector,
        and one where no buffer's shape shows the order: two entries whose shapes read
        the same swapped, as a LayerNorm's weight and bias, or a dict built in another
        order than its sorted keys' with the same shapes both ways).
      state_dict: ``torch_optimizer.state_dict()``.
      step: optimizer steps taken, needed where torch does not record them
        (SGD, Muon, LBFGS) once its state is not empty or when a hyperparameter
        follows a schedule; elsewhere it must equal torch's count.
      averaged_model_state_dict: with ``gradtx.average_params``,
        ``averaged_model.state_dict()``: ``n_averaged`` and the averaged
        parameters (``torch.optim.swa_utils.AveragedModel``).  They are in
        ``model.parameters()`` order, paired with the optimizer's parameters by
        name where torch's param groups have ``param_names`` (an optimizer
        given ``model.named_parameters()``), else by position: then the
        optimizer must have been given them in that same order.

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
    group, states, index = _group_and_states(t, state_dict, tree, params)
    group = with_later_keys(t, group)
    check_group(t, group)
    check_arguments(FROM, t, {})
    state = optimizer.init(tree)
    hs = state if t.average is None else state.inner_state.inner_state
    count = count_of(t, states, step, index)
    hs = set_from_group(t, hs._replace(count=jnp.asarray(count, jnp.int32)), group)
    inner = buffers_in(t, hs, tree, states, index)
    if t.entry.hook is not None:
        current = lambda name: numpy_of(value_at(t, hs, name))  # noqa: E731
        inner = HOOKS[t.entry.hook][0](inner, states, current, count, SD)
    hs = hs._replace(inner_state=inner)
    if averaged_model_state_dict is None:
        return hs
    sd = averaged_model_state_dict
    kept = jax.tree.leaves(state.inner_state.averaged)  # its dtypes (float32 for 16-bit params)
    keys = averaged_keys(FROM, sd, leaves, list(state_dict.get("param_groups", ())))
    parts = [jnp.asarray(numpy_of(sd[k]), a.dtype) for k, a in zip(keys, kept)]
    if t.entry.step or step is not None:  # else averaging every step (see count_of)
        check_n_averaged(t, count, int(numpy_of(sd["n_averaged"])))
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
    second time.  torch's Rprop reads its ``lr`` at its first step only, so from
    ``gradtx.rprop`` under a schedule that still moves, the torch run parts from
    gradtx's at the next change of rate (this warns).  Complex params are refused: torch's adaptive optimizers
    keep their statistics per real and imaginary part.  Imports torch.

    Args:
      optimizer: the gradtx optimizer that made ``state``.
      state: its state.
      params: the parameters (leaf ``i`` is torch's parameter ``i``; for LBFGS a
        list or a ``collections.OrderedDict``, not a plain dict, as its flat state
        shows no order; for the others, not a plain dict whose order no buffer's
        shape shows, as for ``from_torch_state_dict``).
      averaged_model_state_dict: with ``gradtx.average_params``, the
        ``state_dict()`` of the ``AveragedModel`` to fill, holding
        ``n_averaged`` and the parameter entries only (they are replaced, in
        order: entry ``i`` gets leaf ``i``'s average, so a model whose
        optimizer took its parameters in another order needs the entries
        reordered to the optimizer's first).  For a model with buffers keep ``n_averaged`` and
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
        have = value_at(t, hs, name, step_after(count) - count if late else 0)
        if late and count == 0 and have is not None:
            first = numpy_of(value_at(t, hs, name))
            if not np.array_equal(first, numpy_of(have)):
                raise ValueError(
                    f"{TO}(state=...): {t.made.call}'s {name} is {first} at step 0 and "
                    f"{numpy_of(have)} at step 1, which torch takes from one lr: {late}"
                )
        values[name] = t.entry.stages.get(name) if have is None else numpy_of(have)
    for key, codec in t.entry.hyperparams.items():
        for name in codec.names:
            warn_if_rprop_rate_moves(f"{TO}(state=...)", t, hs, name, key)
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
        current = lambda name: numpy_of(value_at(t, hs, name))  # noqa: E731
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
    # only buffers (and averages) are per parameter: a step count is every parameter's
    written = any(set(s) - {"step"} for s in out.values()) or averaged_model_state_dict is not None
    check_flat_order(TO, t, params, names_checked=not written)
    result = {"state": {i: s for i, s in out.items() if s}, "param_groups": [group]}
    if averaged_model_state_dict is None:
        return result
    avg, filled = state.inner_state, dict(averaged_model_state_dict)
    filled["n_averaged"] = torch.tensor(int(avg.n_averaged), dtype=torch.long)
    for k, x in zip(averaged_keys(TO, filled, leaves), jax.tree.leaves(avg.averaged)):
        filled[k] = convert.tensor(x).to(filled[k].dtype)
    return result, filled
