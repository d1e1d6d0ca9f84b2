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
from gradtx.optimizers.adaptive import adadelta, adagrad, rmsprop
from gradtx.optimizers.lookahead import LookaheadState, lookahead, ranger
from gradtx.optimizers.nadam import nadam
from gradtx.optimizers.radam import radam
from gradtx.optimizers.sgd import sgd, sgdw
from gradtx.transforms.adadelta import ScaleByAdadeltaState, scale_by_adadelta
from gradtx.transforms.centralize import centralize
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import (
    AddMomentumState,
    AddNesterovMomentumState,
    BiasCorrectState,
    add_momentum,
    add_nesterov_momentum,
    bias_correct,
)
from gradtx.transforms.rectify import (
    RectifyState,
    WhenRectifiedState,
    rectify,
    when_rectified,
)
from gradtx.transforms.rms import ScaleByRmsState, scale_by_rms
from gradtx.transforms.rss import ScaleByRssState, scale_by_rss
from gradtx.transforms.scaling import ScaleByScheduleState, scale, scale_by_learning_rate
from gradtx.wrappers.flatten import FlattenState, flatten

__version__ = "0.1.0"

__all__ = [
    "AddMomentumState",
    "AddNesterovMomentumState",
    "BiasCorrectState",
    "EmptyState",
    "FlattenState",
    "GradientMap",
    "HyperparamsState",
    "LookaheadState",
    "RectifyState",
    "ScaleByAdadeltaState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "WhenRectifiedState",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "add_l2",
    "add_momentum",
    "add_nesterov_momentum",
    "amsgrad",
    "apply_updates",
    "bias_correct",
    "centralize",
    "chain",
    "decoupled_weight_decay",
    "flatten",
    "get_hyperparams",
    "hyperparameterized",
    "identity",
    "lookahead",
    "nadam",
    "named_chain",
    "radam",
    "ranger",
    "rectify",
    "rmsprop",
    "scale",
    "scale_by_adadelta",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "stateless",
    "when_rectified",
]
