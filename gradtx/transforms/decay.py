"""Weight decay: L2 regularisation and decoupled decay."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import Params
from gradtx._base import ScalarOrSchedule
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask

DECAY = Hyper(low=0.0, schedule=True)


def resolve_mask(
    call: str, params: Params, mask: MaskTree | None, mask_fn: MaskFn | None
) -> list | None:
    """One static bool per leaf of ``params`` (or ``None`` for 'all leaves').

    The mask is a pytree of bools (the params' tree or a prefix of it) or a
    function of the params given as ``mask_fn``, never guessed with
    ``callable()``: the same rule as ``gradtx.masked``.
    """
    if mask is None and mask_fn is None:
        return None
    return _tree.static_bools(call, _tree.per_leaf(call, "mask", mask, mask_fn, params), params)


def check_mask_pair(mask: Any, mask_fn: Any) -> None:
    """A body's check that at most one of ``mask`` and ``mask_fn`` is given."""
    call = current_call("gradtx.decoupled_weight_decay")
    _tree.refuse_both(f"{call}(mask=..., mask_fn=...)", "mask", mask, mask_fn)


def _add_scaled_params(kind, default_call, weight_decay, mask, mask_fn):
    check_mask_pair(mask, mask_fn)
    call = current_call(default_call)
    # this stage is built again at each update of a factory: what init saw is shared
    given = _update_checks.shared_fn_values(call, "mask", mask_fn)

    def init(params):
        if mask_fn is not None:  # what update must find again (nnx.Optimizer: arrays there)
            try:
                given.remember(params, resolve_mask(call, params, None, mask_fn))
            except Exception:  # noqa: BLE001  update, which reads the mask, says what fails
                pass
        return EmptyState()

    def update(updates, state, params=None, **extra):
        call = current_call(default_call)
        if params is None:
            raise ValueError(f"{call}: update needs params (the decay is weight_decay * params)")
        leaf_mask = resolve_mask(call, params, mask, mask_fn)
        if leaf_mask is not None:
            given.check(params, leaf_mask)

        def one(u, p, keep=True):
            if not keep:
                return u
            dtype = _dtypes.compute_dtype(u.dtype, p.dtype)
            wd = jnp.asarray(weight_decay).astype(dtype)
            return (u.astype(dtype) + wd * p.astype(dtype)).astype(u.dtype)

        if leaf_mask is None:
            return jax.tree.map(one, updates, params), state
        keep = jax.tree.structure(updates).unflatten(leaf_mask)
        return jax.tree.map(one, updates, params, keep), state

    return kind(init, update)


@factory(kind=GradientMap, weight_decay=DECAY, mask=Mask(), mask_fn=Function())
def add_l2(
    weight_decay: ScalarOrSchedule, *, mask: MaskTree | None = None, mask_fn: MaskFn | None = None
) -> GradientMap:
    """L2 regularisation: ``g <- g + weight_decay * params``.

    Put it first in a chain: the term then enters every statistic (momentum,
    second moments), as PyTorch's ``weight_decay`` argument does.  It is a
    gradient map, so later statistics in the chain see ``g + weight_decay * params``.

    Args:
      weight_decay: non-negative coefficient.
      mask: pytree of bools like the params (or a prefix); ``False`` leaves are not decayed.
      mask_fn: function of the params returning such a mask.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.add_l2(0.5)
      >>> p = jnp.array([2.0, 4.0])
      >>> tx.update(jnp.zeros(2), tx.init(p), p)[0]
      Array([1., 2.], dtype=float32)
    """
    return _add_scaled_params(GradientMap, "gradtx.add_l2", weight_decay, mask, mask_fn)


@factory(weight_decay=DECAY, mask=Mask(), mask_fn=Function())
def decoupled_weight_decay(
    weight_decay: ScalarOrSchedule, *, mask: MaskTree | None = None, mask_fn: MaskFn | None = None
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
      mask: pytree of bools like the params (or a prefix); ``False`` leaves are not decayed.
      mask_fn: function of the params returning such a mask.
    """
    return _add_scaled_params(
        GradientTransformation, "gradtx.decoupled_weight_decay", weight_decay, mask, mask_fn
    )
