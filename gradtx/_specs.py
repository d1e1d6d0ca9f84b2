"""Specs of factory arguments: what each hyperparameter and option may be.

A factory (``gradtx._factory.factory``) maps each of its parameters to one of
these.  A ``Hyper`` is a number kept in state (checked against its range, maybe
a schedule, maybe a stage that a zero leaves out); an ``Option`` is static: it
shapes the program, so it is checked and kept as Python.
"""

from __future__ import annotations

import numbers
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _stored
from gradtx._base import float_dtype
from gradtx._base import is_schedule
from gradtx._base import multisteps_hint
from gradtx._base import with_extra_args
from gradtx.schedules._common import check_stored_steps
from gradtx.schedules._common import step_field
from gradtx.schedules._remake import check_built


def _narrow(value: jax.Array) -> bool:
    """An int or 16-bit float array, which a factory takes as the default float."""
    return not jnp.issubdtype(value.dtype, jnp.floating) or _dtypes.is_16_bit_float(value.dtype)


class Hyper(NamedTuple):
    """Spec of a numeric hyperparameter (kept in state).

    Attributes:
      low, high: the allowed range (``None``: unbounded).
      low_open, high_open: exclude the bound itself.
      schedule: a schedule or callable of the step count is allowed.
      optional: ``None`` or a Python zero leaves the stage it weighs out.
      nullable: ``None`` leaves the stage out (a zero is a value).
      integer: a Python number must be an int (a patience, a period).
      whole_exact: the whole part must survive storage (the number is compared
        with the step count, where a neighbour would move the step it names).
      finite: reject infinities.
      init_only: read only by ``init`` (a starting value): checked, then bound
        into the transform instead of kept in state, since changing it later
        would have no effect (``set_hyperparams`` does not list it).
      decays: a momentum (up to 1, closed): a 16-bit format that rounds it to 1
        is warned of, as for a decay rate (``near_one``).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    schedule: bool = False
    optional: bool = False
    nullable: bool = False
    integer: bool = False
    whole_exact: bool = False
    finite: bool = True
    init_only: bool = False
    decays: bool = False

    def check(self, call: str, name: str, value: Any) -> Any:
        if value is None:
            if self.optional or self.nullable:
                return None
            raise TypeError(f"{call}({name}=None): {name} must be a real number, got NoneType")
        _checks.check_hyperparam(
            call,
            name,
            value,
            low=self.low,
            high=self.high,
            low_open=self.low_open,
            high_open=self.high_open,
            schedule=self.schedule,
            finite=self.finite,
        )
        if callable(value) and not is_schedule(value):
            _checks.check_takes_a_count(call, name, value)
        if isinstance(value, jax.Array) and not _checks.is_known(value) and self.near_one:
            _stored.warn_narrow_rate(call, name, value)
        number = _checks.known_value(value)  # a known JAX array's too (it stays bound)
        if self.integer and _checks.is_concrete_number(number) and not float(number).is_integer():
            raise TypeError(f"{call}({name}={_checks.shown(value)}): {name} must be an int")
        # The rest is about storage in the default float dtype.  A JAX array is bound
        # instead, in its own dtype, but for an int or 16-bit float one, which becomes
        # the default float below (a 16-bit one exactly, an int above 2**24 maybe not).
        narrowed = number is not value and not self.integer and _narrow(value)
        if _checks.is_concrete_number(value) or narrowed:
            _stored.check_stored(call, name, number, float_dtype(), integer=self.integer)
            if self.whole_exact:
                _stored.check_step_number(call, name, number, float_dtype())
        elif is_schedule(value):  # stored too: its int fields are counts of steps
            for path, leaf in jax.tree_util.tree_leaves_with_path(value):
                field = f"{name}{jax.tree_util.keystr(path)}"
                if isinstance(leaf, (int, np.integer)) and not isinstance(leaf, bool):
                    _stored.check_stored(call, field, leaf, float_dtype(), integer=True)
                elif isinstance(leaf, (float, np.floating, np.ndarray)):
                    _stored.check_stored_values(call, field, leaf, float_dtype())
                    if step_field(value, path):  # boundaries: float vectors of steps
                        check_stored_steps(call, field, leaf, float_dtype())
            check_built(call, name, value)  # a class built directly skipped its constructor
        if self.is_rate and _checks.is_concrete_number(value):
            _stored.check_below_one(call, name, float(value), float_dtype(), "stored in")
        if _checks.is_concrete_number(value):
            bounds = (self.low, self.high, self.low_open, self.high_open)
            _stored.check_rounded(call, name, value, float_dtype(), bounds)
        if self.optional and _checks.is_zero(value):
            return None
        if self.integer:
            return value
        if isinstance(value, jax.Array):
            # an int or 16-bit array must not set the dtype the step computes in (an int
            # max_norm made an int norm; a bfloat16 b1 rounded Nesterov's products); a
            # float32 or float64 one stays as given (derive compares it in its precision)
            return _dtypes.as_float(value) if _narrow(value) else value
        if isinstance(value, numbers.Real) and not isinstance(value, (float, np.floating)):
            return float(value)  # an int (2**31 overflows int32), a Fraction
        return value

    def schedulable(self) -> Hyper:
        """The same spec, allowing a schedule."""
        return self._replace(schedule=True)

    @property
    def is_rate(self) -> bool:
        """A decay rate in [0, 1): it must stay below 1 after rounding."""
        return self.high == 1.0 and self.high_open

    @property
    def near_one(self) -> bool:
        """A decay rate or a momentum, which a 16-bit format may round to 1 (a weight or
        a tolerance up to 1 is not: 1 is an ordinary value there)."""
        return self.is_rate or self.decays


class Option:
    """Spec of a static option (it shapes the program, so it is not data).

    ``target``: for optax's name of a number torch names otherwise (an alias), the
    argument that keeps its value in the state; ``None`` for a true option."""

    target: str | None = None

    def check(self, call: str, name: str, value: Any) -> Any:
        return value


class Flag(Option):
    def check(self, call, name, value):
        _checks.check_flag(call, name, value, bool)
        return bool(value)


class Choice(Option):
    """One of ``choices``; with ``optional=True`` also ``None`` ("from the convention")."""

    def __init__(self, *choices: str, optional: bool = False) -> None:
        self.choices, self.optional = choices, optional

    def check(self, call, name, value):
        if value is None and self.optional:
            return None
        _checks.check_choice(call, name, value, self.choices)
        return value


CONVENTION = Choice("torch", "optax")
"""Which library's update rule an optimizer follows (never its defaults)."""


class DType(Option):
    """``None`` or a floating or complex dtype (a storage dtype); ``wide``: at least 32
    bits (a dtype XLA's linear algebra runs in: its SVD has no 16-bit kernel)."""

    def __init__(self, *, wide: bool = False) -> None:
        self.wide = wide

    def check(self, call, name, value):
        _checks.check_dtype(call, name, value)
        if self.wide and value is not None and np.dtype(value).itemsize < 4:
            raise ValueError(
                f"{call}({name}={np.dtype(value).name}): {name} must be float32, float64 "
                "or complex (the SVD has no 16-bit kernel); None runs it in the gradient's "
                "dtype, float32 for 16-bit gradients"
            )
        return value


class Int(Option):
    """A static int in ``[low, 2**31 - 1]`` (``low=None``: any int, e.g. an axis)."""

    def __init__(self, low: int | None = 0, *, optional: bool = False) -> None:
        self.low, self.optional = low, optional

    def check(self, call, name, value):
        if value is None and self.optional:
            return None
        if self.low is None:
            _checks.check_int(call, name, value, -_dtypes.INT32_MAX)
        else:
            _checks.check_int(call, name, value, self.low)
        return int(value)


class OptionalFlag(Option):
    """``None`` ("from the convention") or a bool."""

    def check(self, call, name, value):
        if value is None:
            return None
        _checks.check_flag(call, name, value, bool)
        return bool(value)  # callers test ``is False``, which np.False_ is not


class Mask(Option):
    """``None`` or a pytree of Python bools (a prefix of the params)."""

    def check(self, call, name, value):
        _checks.check_static_tree(call, name, value, (bool, np.bool_), "Python bools")
        return value


class Function(Option):
    """``None`` or a callable of one argument, ``takes`` (the params, by default)."""

    def __init__(self, takes: str = "the params") -> None:
        self.takes = takes

    def check(self, call, name, value):
        if value is not None and not callable(value):
            hint = _checks.inject_hint(name, value, "a function argument")
            raise TypeError(f"{call}({name}={value!r}): {name} must be a function or None{hint}")
        if value is not None:
            _checks.check_takes_one(call, name, value, self.takes)
        return value


class Transform(Option):
    """A gradient transformation (gradtx or optax); ``optional``: or ``None``."""

    def __init__(self, *, optional: bool = False) -> None:
        self.optional = optional

    def check(self, call, name, value):
        if value is None and self.optional:
            return None
        if not isinstance(value, optax.GradientTransformation):
            raise TypeError(
                f"{call}({name}=...): {name} must be a GradientTransformation, "
                f"got {type(value).__name__}{multisteps_hint(value)}"
            )
        return with_extra_args(value, f"{call}({name}=...)")


class Anything(Option):
    """Checked by the body (e.g. a pytree of labels)."""


LEARNING_RATE = Hyper(low=0.0, schedule=True)
"""A learning rate: non-negative, a number or a schedule."""
DECAY_RATE = Hyper(low=0.0, high=1.0, high_open=True)
"""An EMA decay rate in [0, 1) (b2, rho, decay): must stay below 1 after rounding."""
MOMENTUM = Hyper(low=0.0, high=1.0, schedule=True, decays=True)
"""A momentum coefficient in [0, 1], schedulable."""
NON_NEGATIVE = Hyper(low=0.0)
"""Any number >= 0 (eps, a bound)."""
STEP = Hyper(low=0.0, whole_exact=True)
"""A step number >= 0, not necessarily whole (ASGD's t0): one the step count can reach
keeps its whole part where it is stored."""
INITIAL_VALUE = Hyper(low=0.0, init_only=True)
"""A statistic's starting value >= 0 (Adagrad's accumulator): read by init only."""
WEIGHT_DECAY = Hyper(low=0.0, schedule=True, optional=True)
"""A weight: None or 0 leaves its stage out."""
