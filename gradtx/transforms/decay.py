"""Weight decay: L2 regularisation and decoupled decay."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from gradtx import _tree
from gradtx._base import EmptyState, GradientMap, GradientTransformation, hyperparameterized
from gradtx._checks import check_hyperparam


def resolve_mask(call: str, params: Any, mask: Any, mask_fn: Callable | None) -> list | None:
    """One static bool per leaf of ``params`` (or ``None`` for 'all leaves').

    The mask is a pytree of bools (the params' tree or a prefix of it) or a
    function of the params given as ``mask_fn``, never guessed with
    ``callable()``: the same rule as ``gradtx.masked``.
    """
    if mask is None and mask_fn is None:
        return None
    return _tree.static_bools(call, _tree.per_leaf(call, "mask", mask, mask_fn, params))


def check_mask(call: str, mask: Any, mask_fn: Any) -> None:
    """Eager checks of the ``mask``/``mask_fn`` pair of a factory."""
    if mask is not None and mask_fn is not None:
        raise ValueError(f"{call}(mask=..., mask_fn=...): give mask or mask_fn, not both")
    if mask_fn is not None and not callable(mask_fn):
        raise TypeError(f"{call}(mask_fn={mask_fn!r}): mask_fn must be a function of the params")


def _add_scaled_params(call, kind, *, weight_decay, mask, mask_fn):
    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(f"{call}: update needs params (the decay is weight_decay * params)")
        _tree.check_same_structure(f"{call}.update", updates, params, "params")
        leaf_mask = resolve_mask(call, params, mask, mask_fn)

        def one(u, p, keep=True):
            if not keep:
                return u
            return (u + _tree.scalar_like(weight_decay, u) * p.astype(u.dtype)).astype(u.dtype)

        if leaf_mask is None:
            return jax.tree.map(one, updates, params), state
        keep = jax.tree.structure(updates).unflatten(leaf_mask)
        return jax.tree.map(one, updates, params, keep), state

    return kind(lambda params: EmptyState(), update)


def add_l2(weight_decay: Any, *, mask: Any = None, mask_fn: Callable | None = None) -> GradientMap:
    """L2 regularisation: ``g <- g + weight_decay * params``.

    Put it first in a chain: the term then enters every statistic (momentum,
    second moments), as PyTorch's ``weight_decay`` argument does.  It is a
    gradient map, so later statistics in the chain see ``g + weight_decay * params``.

    Args:
      weight_decay: non-negative coefficient.
      mask: pytree of bools like the params; ``False`` leaves are not decayed.
      mask_fn: function of the params returning such a mask.
    """
    call = "gradtx.add_l2"
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    check_mask(call, mask, mask_fn)
    build = functools.partial(_add_scaled_params, call, GradientMap, mask=mask, mask_fn=mask_fn)
    return GradientMap(*hyperparameterized(build, {"weight_decay": weight_decay}))


def decoupled_weight_decay(
    weight_decay: Any, *, mask: Any = None, mask_fn: Callable | None = None
) -> GradientTransformation:
    """Decoupled weight decay: ``u <- u + weight_decay * params``, outside the statistics.

    Placed after the adaptive step and before ``scale_by_learning_rate`` it gives
    ``theta <- theta - lr * (step + weight_decay * theta)``, identical to
    PyTorch's ``theta * (1 - lr * weight_decay)`` followed by the step (AdamW,
    SGDW).  The decay is multiplied by the full learning rate, as in PyTorch and
    optax; the paper multiplies it by the schedule multiplier only, which is
    ``weight_decay = lambda_paper / base_lr`` here.

    Args:
      weight_decay: non-negative coefficient.
      mask: pytree of bools like the params; ``False`` leaves are not decayed.
      mask_fn: function of the params returning such a mask.
    """
    call = "gradtx.decoupled_weight_decay"
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    check_mask(call, mask, mask_fn)
    build = functools.partial(
        _add_scaled_params, call, GradientTransformation, mask=mask, mask_fn=mask_fn
    )
    return hyperparameterized(build, {"weight_decay": weight_decay})
