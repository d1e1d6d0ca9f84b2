"""gradtx: composable, exact gradient transformations for JAX."""

from gradtx._base import (
    EmptyState,
    GradientMap,
    HyperparamsState,
    apply_updates,
    chain,
    hyperparameterized,
    identity,
    named_chain,
    stateless,
)
from gradtx._hyperparams import get_hyperparams, set_hyperparams
from gradtx.optimizers.adam import adam, adamw, amsgrad
from gradtx.optimizers.bounded import adabound, amsbound
from gradtx.optimizers.sgd import sgd, sgdw
from gradtx.optimizers.switching import swats
from gradtx.transforms.bounds import ScaleByBoundedRmsState, scale_by_bounded_rms
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import (
    AddMomentumState,
    BiasCorrectState,
    add_momentum,
    bias_correct,
)
from gradtx.transforms.rms import ScaleByRmsState, scale_by_rms
from gradtx.transforms.scaling import ScaleByScheduleState, scale, scale_by_learning_rate
from gradtx.transforms.switch import SwitchToSgdState, switch_to_sgd

__version__ = "0.1.0"

__all__ = [
    "AddMomentumState",
    "BiasCorrectState",
    "EmptyState",
    "GradientMap",
    "HyperparamsState",
    "ScaleByBoundedRmsState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "SwitchToSgdState",
    "adabound",
    "adam",
    "adamw",
    "add_l2",
    "add_momentum",
    "amsbound",
    "amsgrad",
    "apply_updates",
    "bias_correct",
    "chain",
    "decoupled_weight_decay",
    "get_hyperparams",
    "hyperparameterized",
    "identity",
    "named_chain",
    "scale",
    "scale_by_bounded_rms",
    "scale_by_learning_rate",
    "scale_by_rms",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "stateless",
    "swats",
    "switch_to_sgd",
]
