"""gradtx: composable, exact gradient transformations for JAX."""

from gradtx import schedules
from gradtx._base import (
    EmptyState,
    GradientMap,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    chain,
    gradient,
    identity,
    named_chain,
    stateless,
    step_count,
    transform,
)
from gradtx._factory import (
    CONVENTION,
    DECAY_RATE,
    LEARNING_RATE,
    MOMENTUM,
    NON_NEGATIVE,
    WEIGHT_DECAY,
    Anything,
    Choice,
    DType,
    Flag,
    Function,
    Hyper,
    HyperparamsState,
    Int,
    Mask,
    Option,
    OptionalFlag,
    Transform,
    UncountedHyperparamsState,
    factory,
    hyperparameterized,
)
from gradtx._hyperparams import get_hyperparams, set_hyperparams
from gradtx.optimizers.adafactor import adafactor
from gradtx.optimizers.adam import adam, adamw, amsgrad
from gradtx.optimizers.adamax import adamax, adamaxw
from gradtx.optimizers.adaptive import adadelta, adagrad, rmsprop
from gradtx.optimizers.bounded import adabound, amsbound
from gradtx.optimizers.lookahead import LookaheadState, lookahead, ranger
from gradtx.optimizers.muon import muon
from gradtx.optimizers.nadam import nadam
from gradtx.optimizers.radam import radam
from gradtx.optimizers.sgd import sgd, sgdw
from gradtx.optimizers.switching import swats
from gradtx.transforms.adadelta import ScaleByAdadeltaState, scale_by_adadelta
from gradtx.transforms.block_rms import clip_by_block_rms, scale_by_param_rms
from gradtx.transforms.bounds import ScaleByBoundedRmsState, scale_by_bounded_rms
from gradtx.transforms.centralize import centralize
from gradtx.transforms.clipping import clip, clip_by_global_norm
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.factored import ScaleByFactoredRmsState, scale_by_factored_rms
from gradtx.transforms.infinity_norm import ScaleByInfinityNormState, scale_by_infinity_norm
from gradtx.transforms.interpolate import interpolate_gradient
from gradtx.transforms.momentum import (
    AddMomentumState,
    AddNesterovMomentumState,
    add_momentum,
    add_nesterov_momentum,
    bias_correct,
)
from gradtx.transforms.orthogonalize import orthogonalize, scale_by_shape
from gradtx.transforms.plateau import ReduceOnPlateauState, reduce_on_plateau
from gradtx.transforms.rectify import (
    RectifyState,
    WhenRectifiedState,
    rectify,
    when_rectified,
)
from gradtx.transforms.rms import ScaleByRmsState, scale_by_rms
from gradtx.transforms.rss import ScaleByRssState, scale_by_rss
from gradtx.transforms.scaling import scale, scale_by_learning_rate
from gradtx.transforms.switch import SwitchToSgdState, switch_to_sgd
from gradtx.wrappers.accumulation import AccumulateGradientsState, accumulate_gradients
from gradtx.wrappers.finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers.flatten import FlattenState, flatten
from gradtx.wrappers.groups import MaskedNode, MaskedState, masked, partition
from gradtx.wrappers.monitors import TrackNormsState, get_norms, track_norms

__version__ = "0.1.0"

__all__ = [
    "AccumulateGradientsState",
    "AddMomentumState",
    "AddNesterovMomentumState",
    "Anything",
    "ApplyIfFiniteState",
    "CONVENTION",
    "Choice",
    "DECAY_RATE",
    "DType",
    "EmptyState",
    "Flag",
    "FlattenState",
    "Function",
    "GradientMap",
    "Hyper",
    "HyperparamsState",
    "Int",
    "LEARNING_RATE",
    "LookaheadState",
    "MOMENTUM",
    "Mask",
    "MaskedNode",
    "MaskedState",
    "NON_NEGATIVE",
    "OptState",
    "Option",
    "OptionalFlag",
    "Params",
    "RectifyState",
    "ReduceOnPlateauState",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByBoundedRmsState",
    "ScaleByFactoredRmsState",
    "ScaleByInfinityNormState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "Schedule",
    "SwitchToSgdState",
    "TrackNormsState",
    "Transform",
    "UncountedHyperparamsState",
    "Updates",
    "WEIGHT_DECAY",
    "WhenRectifiedState",
    "accumulate_gradients",
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "add_l2",
    "add_momentum",
    "add_nesterov_momentum",
    "amsbound",
    "amsgrad",
    "apply_if_finite",
    "apply_updates",
    "bias_correct",
    "centralize",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "decoupled_weight_decay",
    "factory",
    "flatten",
    "get_hyperparams",
    "get_norms",
    "gradient",
    "hyperparameterized",
    "identity",
    "interpolate_gradient",
    "lookahead",
    "masked",
    "muon",
    "nadam",
    "named_chain",
    "orthogonalize",
    "partition",
    "radam",
    "ranger",
    "rectify",
    "reduce_on_plateau",
    "rmsprop",
    "scale",
    "scale_by_adadelta",
    "scale_by_bounded_rms",
    "scale_by_factored_rms",
    "scale_by_infinity_norm",
    "scale_by_learning_rate",
    "scale_by_param_rms",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_shape",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "stateless",
    "step_count",
    "swats",
    "switch_to_sgd",
    "track_norms",
    "transform",
    "when_rectified",
]
