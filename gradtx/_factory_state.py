"""What a factory's transform keeps in its state, and the record of the call that made it.

``HyperparamsState`` (the numbers, the step count, the inner state) and its
uncounted form; ``FactoryCall``, recorded on a transform's ``init`` so that
``made_by`` can tell which public call made it (``to_torch_state_dict`` reads
the torch class from it); ``Bound`` and ``Unused``, what a factory's ``derive``
returns for a number this configuration reads only at ``init`` or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax

from gradtx._base import OptState


def shown_key(name: str) -> str:
    """The key of a plain callable's shown value in ``python_schedules``.

    It is not the hyperparameter's name, so optax's ``tree_set`` of that name finds
    nothing to edit and raises (the update calls the callable, code, not this value),
    as it raises on a schedule inside ``optax.inject_hyperparams``.
    """
    return f"{name}()"


def shown_name(key: str) -> str:
    """The hyperparameter whose shown value is ``python_schedules[key]``."""
    return key.removesuffix("()")


class HyperparamsState(NamedTuple):
    """State of a transform that owns hyperparameters and the step count.

    Attributes:
      count: updates so far (int32, saturating): the optimizer's one step counter.
      hyperparams: name -> scalar array, or a gradtx schedule whose fields are
        arrays (evaluated at ``count``).  Data: ``set_hyperparams`` changes them
        without recompiling.
      python_schedules: ``name()`` -> the value a plain Python callable gives for
        the next update, for ``get_hyperparams``; the update calls the callable at
        ``count``.  Read-only: the callable is code, not data.
      inner_state: the state of the transform built from these values.
    """

    count: jax.Array  # type: ignore[assignment]  # the field shadows tuple.count, as in optax
    hyperparams: dict[str, Any]
    python_schedules: dict[str, jax.Array]
    inner_state: OptState


class UncountedHyperparamsState(NamedTuple):
    """State of a transform that owns hyperparameters but needs no step count."""

    hyperparams: dict[str, Any]
    inner_state: OptState


HYPERPARAMS_STATES = (HyperparamsState, UncountedHyperparamsState)


class FactoryCall(NamedTuple):
    """How a user's call made a transform: recorded on its ``init`` (``made_by`` reads it).

    What a transform *is* (``gradtx.adam(amsgrad=True)``, hence ``torch.optim.Adam``) is a
    property of the object, not of its state: the state holds numbers only, and two
    optimizers of the same structure share one state layout.

    Attributes:
      call: the public name, ``"gradtx.adam"``.
      factory: the public factory (its signature gives the defaults).
      arguments: every argument after the spec checks and ``derive`` (a pruned
        optional stage is ``None``; a JAX array given for a number is kept as given).
    """

    call: str
    factory: Callable[..., Any]
    arguments: Mapping[str, Any]


class Bound(NamedTuple):
    """What ``derive`` returns for a declared number that this configuration reads
    only in ``init`` (DoG's ``init_value`` unless it is the first step size): the
    body gets ``value`` as a constant and the state keeps none, so
    ``set_hyperparams`` refuses to set what would change nothing."""

    value: Any


class Unused(NamedTuple):
    """What ``derive`` returns for a declared number this configuration does not read
    (``average_params``' ``decay`` for ``method="swa"``): the body gets ``None``, the
    state keeps nothing, and ``set_hyperparams`` refusing the name gives ``why``."""

    why: str


def made_by(tx: Any) -> FactoryCall | None:
    """The ``FactoryCall`` that made ``tx``, or ``None`` (not made by a user's call of a
    gradtx factory: an optax transform, a ``chain``, a transform made inside another
    factory's body)."""
    return getattr(getattr(tx, "init", None), "gradtx_factory_call", None)


Specs = dict[str, Any]
"""A factory's specs by parameter name (``Hyper`` or ``Option`` values), shared by variants."""
