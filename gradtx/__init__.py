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
from gradtx.optimizers.adam import adam, adamw, amsgrad
from gradtx.optimizers.adamax import adamax, adamaxw
from gradtx.optimizers.adaptive import adadelta, adagrad, rmsprop
from gradtx.optimizers.ademamix import ademamix, simplified_ademamix
from gradtx.optimizers.asynchronous import acprop, adopt
from gradtx.optimizers.bounded import adabound, amsbound
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.lookahead import LookaheadState, lookahead, ranger
from gradtx.optimizers.madgrad import madgrad
from gradtx.optimizers.nadam import nadam
from gradtx.optimizers.polyak import polyak_sgd
from gradtx.optimizers.radam import radam
from gradtx.optimizers.sam import SamState, sam
from gradtx.optimizers.sgd import sgd, sgdw
from gradtx.optimizers.sm3 import sm3
from gradtx.optimizers.sophia import sophia
from gradtx.optimizers.switching import swats
from gradtx.transforms.adadelta import ScaleByAdadeltaState, scale_by_adadelta
from gradtx.transforms.bounds import ScaleByBoundedRmsState, scale_by_bounded_rms
from gradtx.transforms.centralize import centralize
from gradtx.transforms.clipping import clip, clip_by_global_norm
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.dual_averaging import DualAverageState, dual_average
from gradtx.transforms.hessian import (
    HutchinsonState,
    ScaleByHessianDiagonalState,
    hutchinson_hessian_diagonal,
    scale_by_hessian_diagonal,
)
from gradtx.transforms.infinity_norm import ScaleByInfinityNormState, scale_by_infinity_norm
from gradtx.transforms.lagged import (
    ScaleByLaggedBeliefState,
    ScaleByLaggedRmsState,
    scale_by_lagged_belief,
    scale_by_lagged_rms,
)
from gradtx.transforms.mix import MixGradientState, mix_gradient
from gradtx.transforms.momentum import (
    AddMomentumState,
    AddNesterovMomentumState,
    add_momentum,
    add_nesterov_momentum,
    bias_correct,
)
from gradtx.transforms.normalize import normalize
from gradtx.transforms.plateau import ReduceOnPlateauState, reduce_on_plateau
from gradtx.transforms.polyak import scale_by_polyak
from gradtx.transforms.rectify import (
    RectifyState,
    WhenRectifiedState,
    rectify,
    when_rectified,
)
from gradtx.transforms.rms import ScaleByRmsState, scale_by_rms
from gradtx.transforms.rss import ScaleByRssState, scale_by_rss
from gradtx.transforms.scaling import scale, scale_by_learning_rate
from gradtx.transforms.sm3 import ScaleBySm3State, scale_by_sm3
from gradtx.transforms.switch import SwitchToSgdState, switch_to_sgd
from gradtx.transforms.trust_ratio import scale_by_trust_ratio
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
    "DualAverageState",
    "EmptyState",
    "Flag",
    "FlattenState",
    "Function",
    "GradientMap",
    "HutchinsonState",
    "Hyper",
    "HyperparamsState",
    "Int",
    "LEARNING_RATE",
    "LookaheadState",
    "MOMENTUM",
    "Mask",
    "MaskedNode",
    "MaskedState",
    "MixGradientState",
    "NON_NEGATIVE",
    "OptState",
    "Option",
    "OptionalFlag",
    "Params",
    "RectifyState",
    "ReduceOnPlateauState",
    "SamState",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByBoundedRmsState",
    "ScaleByHessianDiagonalState",
    "ScaleByInfinityNormState",
    "ScaleByLaggedBeliefState",
    "ScaleByLaggedRmsState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleBySm3State",
    "Schedule",
    "SwitchToSgdState",
    "TrackNormsState",
    "Transform",
    "UncountedHyperparamsState",
    "Updates",
    "WEIGHT_DECAY",
    "WhenRectifiedState",
    "accumulate_gradients",
    "acprop",
    "adabound",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "add_l2",
    "add_momentum",
    "add_nesterov_momentum",
    "ademamix",
    "adopt",
    "amsbound",
    "amsgrad",
    "apply_if_finite",
    "apply_updates",
    "bias_correct",
    "centralize",
    "chain",
    "clip",
    "clip_by_global_norm",
    "decoupled_weight_decay",
    "dual_average",
    "factory",
    "flatten",
    "get_hyperparams",
    "get_norms",
    "gradient",
    "hutchinson_hessian_diagonal",
    "hyperparameterized",
    "identity",
    "lamb",
    "lars",
    "lookahead",
    "madgrad",
    "masked",
    "mix_gradient",
    "nadam",
    "named_chain",
    "normalize",
    "partition",
    "polyak_sgd",
    "radam",
    "ranger",
    "rectify",
    "reduce_on_plateau",
    "rmsprop",
    "sam",
    "scale",
    "scale_by_adadelta",
    "scale_by_bounded_rms",
    "scale_by_hessian_diagonal",
    "scale_by_infinity_norm",
    "scale_by_lagged_belief",
    "scale_by_lagged_rms",
    "scale_by_learning_rate",
    "scale_by_polyak",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "simplified_ademamix",
    "sm3",
    "sophia",
    "stateless",
    "step_count",
    "swats",
    "switch_to_sgd",
    "track_norms",
    "transform",
    "when_rectified",
]
