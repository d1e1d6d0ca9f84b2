"""Schedules: functions of the 0-based step count ``k``.

A gradtx schedule is a frozen dataclass whose fields are all numbers (1-D
arrays for variable-length fields, nested schedules for ``join``), registered
as a JAX pytree and callable on the count.  Like an optax schedule it works
under ``jax.jit(schedule)``, ``jax.vmap(schedule)`` and ``jax.grad(schedule)``
(w.r.t. a float count), and a batch of schedules (fields stacked) vmaps too.
Given as a hyperparameter, it is stored whole in the optimizer state as
arrays of JAX's default float dtype, so ``set_hyperparams`` can change e.g.
``learning_rate.peak_value`` without recompiling, ``jax.vmap`` can sweep it,
and ``get_hyperparams`` reports its value at the current step.  Options
that would change the formula (modes, anneal kind, three phases) are 0/1
or numeric fields combined without branching, so every ``__call__`` works
when each field is a float array.  Plain Python callables are accepted
wherever a schedule is (their value is kept in state, read-only).
Values (init, peak, end, min, base, max) must be non-negative: they are
learning rates, momenta or decays; write a plain callable for anything else.

Names and semantics follow optax where optax has the schedule and
``torch.optim.lr_scheduler`` otherwise; ``docs/schedules.md`` maps each one
to its PyTorch and optax equivalent.
"""

from gradtx.schedules.combine import Join
from gradtx.schedules.combine import Product
from gradtx.schedules.combine import join
from gradtx.schedules.combine import product
from gradtx.schedules.cosine import SGDR
from gradtx.schedules.cosine import CosineDecay
from gradtx.schedules.cosine import WarmupCosineDecay
from gradtx.schedules.cosine import cosine_decay
from gradtx.schedules.cosine import sgdr
from gradtx.schedules.cosine import warmup_cosine_decay
from gradtx.schedules.cyclic import Cyclical
from gradtx.schedules.cyclic import OneCycle
from gradtx.schedules.cyclic import OneCycleMomentum
from gradtx.schedules.cyclic import cyclical
from gradtx.schedules.cyclic import one_cycle
from gradtx.schedules.cyclic import one_cycle_momentum
from gradtx.schedules.decay import Constant
from gradtx.schedules.decay import ConstantWarmup
from gradtx.schedules.decay import ExponentialDecay
from gradtx.schedules.decay import InverseSqrtDecay
from gradtx.schedules.decay import InverseTimeDecay
from gradtx.schedules.decay import Linear
from gradtx.schedules.decay import PiecewiseConstant
from gradtx.schedules.decay import Polynomial
from gradtx.schedules.decay import constant
from gradtx.schedules.decay import constant_warmup
from gradtx.schedules.decay import exponential_decay
from gradtx.schedules.decay import inverse_sqrt_decay
from gradtx.schedules.decay import inverse_time_decay
from gradtx.schedules.decay import linear
from gradtx.schedules.decay import piecewise_constant
from gradtx.schedules.decay import polynomial
from gradtx.schedules.swa import SWALR
from gradtx.schedules.swa import swa_lr

__all__ = [
    "SGDR",
    "SWALR",
    "Constant",
    "ConstantWarmup",
    "CosineDecay",
    "Cyclical",
    "ExponentialDecay",
    "InverseSqrtDecay",
    "InverseTimeDecay",
    "Join",
    "Linear",
    "OneCycle",
    "OneCycleMomentum",
    "PiecewiseConstant",
    "Polynomial",
    "Product",
    "WarmupCosineDecay",
    "constant",
    "constant_warmup",
    "cosine_decay",
    "cyclical",
    "exponential_decay",
    "inverse_sqrt_decay",
    "inverse_time_decay",
    "join",
    "linear",
    "one_cycle",
    "one_cycle_momentum",
    "piecewise_constant",
    "polynomial",
    "product",
    "sgdr",
    "swa_lr",
    "warmup_cosine_decay",
]
