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
from gradtx._factory import HyperparamsState, UncountedHyperparamsState, factory, hyperparameterized
from gradtx._hyperparams import (
    get_hyperparams,
    set_hyperparams,
)
from gradtx._specs import (
    CONVENTION,
    DECAY_RATE,
    INITIAL_VALUE,
    LEARNING_RATE,
    MOMENTUM,
    NON_NEGATIVE,
    STEP,
    WEIGHT_DECAY,
    Anything,
    Choice,
    DType,
    Flag,
    Function,
    Hyper,
    Int,
    Mask,
    Option,
    OptionalFlag,
    Transform,
)
from gradtx.lr_finder import (
    lr_range_test,
)
from gradtx.optimizers._lbfgs_loop import (
    LbfgsState,
)
from gradtx.optimizers.adafactor import (
    adafactor,
)
from gradtx.optimizers.adam import (
    adam,
    adamw,
    amsgrad,
)
from gradtx.optimizers.adamax import (
    adamax,
    adamaxw,
)
from gradtx.optimizers.adan import (
    adan,
)
from gradtx.optimizers.adaptive import (
    adadelta,
    adagrad,
    rmsprop,
)
from gradtx.optimizers.ademamix import (
    ademamix,
    simplified_ademamix,
)
from gradtx.optimizers.asgd import (
    asgd,
)
from gradtx.optimizers.asynchronous import (
    acprop,
    adopt,
)
from gradtx.optimizers.belief import (
    adabelief,
    yogi,
)
from gradtx.optimizers.bounded import (
    adabound,
    amsbound,
)
from gradtx.optimizers.cocob import (
    cocob,
)
from gradtx.optimizers.dadapt import (
    dadapt_adamw,
    prodigy,
)
from gradtx.optimizers.distance import (
    dog,
    dowg,
)
from gradtx.optimizers.galore import (
    galore,
)
from gradtx.optimizers.large_batch import (
    lamb,
    lars,
)
from gradtx.optimizers.layerwise import (
    fromage,
    novograd,
)
from gradtx.optimizers.lbfgs import (
    lbfgs,
)
from gradtx.optimizers.lookahead import (
    LookaheadState,
    lookahead,
    ranger,
)
from gradtx.optimizers.madgrad import (
    madgrad,
)
from gradtx.optimizers.mechanic import (
    MechanicState,
    mechanize,
)
from gradtx.optimizers.momo import (
    momo,
    momo_adam,
)
from gradtx.optimizers.muon import (
    muon,
)
from gradtx.optimizers.nadam import (
    nadam,
)
from gradtx.optimizers.noisy import (
    noisy_sgd,
)
from gradtx.optimizers.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from gradtx.optimizers.polyak import (
    polyak_sgd,
)
from gradtx.optimizers.privacy import (
    dpsgd,
)
from gradtx.optimizers.radam import (
    radam,
)
from gradtx.optimizers.rprop import (
    rprop,
)
from gradtx.optimizers.sam import (
    SamState,
    sam,
)
from gradtx.optimizers.schedule_free import (
    schedule_free_adamw,
    schedule_free_sgd,
)
from gradtx.optimizers.sgd import (
    sgd,
    sgdw,
)
from gradtx.optimizers.sign import (
    lion,
    sign_sgd,
    signum,
)
from gradtx.optimizers.sm3 import (
    sm3,
)
from gradtx.optimizers.sophia import (
    sophia,
)
from gradtx.optimizers.sparse_adam import (
    sparse_adam,
)
from gradtx.optimizers.switching import (
    swats,
)
from gradtx.torch_state import (
    from_torch_state_dict,
    to_torch_state_dict,
)
from gradtx.transforms.adadelta import (
    ScaleByAdadeltaState,
    scale_by_adadelta,
)
from gradtx.transforms.additive_rms import (
    ScaleByAdditiveRmsState,
    scale_by_additive_rms,
)
from gradtx.transforms.averaging import (
    PolyakAverageState,
    polyak_average,
)
from gradtx.transforms.belief import (
    ScaleByBeliefState,
    scale_by_belief,
)
from gradtx.transforms.block_rms import (
    clip_by_block_rms,
    scale_by_param_rms,
)
from gradtx.transforms.bounds import (
    ScaleByBoundedRmsState,
    scale_by_bounded_rms,
)
from gradtx.transforms.centralize import (
    centralize,
)
from gradtx.transforms.clipping import (
    clip,
    clip_by_global_norm,
)
from gradtx.transforms.coin_betting import (
    ScaleByCoinBettingState,
    scale_by_coin_betting,
)
from gradtx.transforms.dadapt import (
    ScaleByDadaptAdamState,
    ScaleByProdigyState,
    scale_by_dadapt_adam,
    scale_by_prodigy,
)
from gradtx.transforms.decay import (
    add_l2,
    decoupled_weight_decay,
)
from gradtx.transforms.distance import (
    ScaleByDistanceOverGradientsState,
    ScaleByDistanceOverWeightedGradientsState,
    scale_by_distance_over_gradients,
    scale_by_distance_over_weighted_gradients,
)
from gradtx.transforms.dual_averaging import (
    DualAverageState,
    dual_average,
)
from gradtx.transforms.factored import (
    ScaleByFactoredRmsState,
    scale_by_factored_rms,
)
from gradtx.transforms.hessian import (
    HutchinsonState,
    ScaleByHessianDiagonalState,
    hutchinson_hessian_diagonal,
    scale_by_hessian_diagonal,
)
from gradtx.transforms.infinity_norm import (
    ScaleByInfinityNormState,
    scale_by_infinity_norm,
)
from gradtx.transforms.interpolate import (
    interpolate_gradient,
)
from gradtx.transforms.interpolation import (
    AddInterpolatedMomentumState,
    add_interpolated_momentum,
)
from gradtx.transforms.lagged import (
    ScaleByLaggedBeliefState,
    ScaleByLaggedRmsState,
    scale_by_lagged_belief,
    scale_by_lagged_rms,
)
from gradtx.transforms.layerwise_norm import (
    ScaleByLayerwiseNormState,
    scale_by_layerwise_norm,
)
from gradtx.transforms.lazy import (
    LazyState,
    lazy,
)
from gradtx.transforms.low_rank import (
    GaLoreDimensionNumbers,
    ScaleByGaloreState,
    scale_by_galore,
)
from gradtx.transforms.mix import (
    MixGradientState,
    mix_gradient,
)
from gradtx.transforms.momentum import (
    AddMomentumState,
    AddNesterovMomentumState,
    add_momentum,
    add_nesterov_momentum,
    bias_correct,
)
from gradtx.transforms.momo import (
    ScaleByMomoAdamState,
    ScaleByMomoState,
    scale_by_momo,
    scale_by_momo_adam,
)
from gradtx.transforms.nesterov_estimate import (
    ScaleByNesterovEstimateState,
    scale_by_nesterov_estimate,
)
from gradtx.transforms.noise import (
    AddNoiseState,
    add_noise,
)
from gradtx.transforms.normalize import (
    normalize,
)
from gradtx.transforms.optimism import (
    AddOptimismState,
    add_optimism,
)
from gradtx.transforms.orthogonalize import (
    orthogonalize,
    scale_by_shape,
)
from gradtx.transforms.plateau import (
    ReduceOnPlateauState,
    reduce_on_plateau,
)
from gradtx.transforms.polyak import (
    scale_by_polyak,
)
from gradtx.transforms.privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
)
from gradtx.transforms.quasi_newton import (
    ScaleByLbfgsState,
    scale_by_lbfgs,
)
from gradtx.transforms.rectify import (
    RectifyState,
    WhenRectifiedState,
    rectify,
    when_rectified,
)
from gradtx.transforms.rms import (
    ScaleByRmsState,
    scale_by_rms,
)
from gradtx.transforms.rprop import (
    ScaleByRpropState,
    scale_by_rprop,
)
from gradtx.transforms.rss import (
    ScaleByRssState,
    scale_by_rss,
)
from gradtx.transforms.scaling import (
    scale,
    scale_by_learning_rate,
    scale_by_multipliers,
)
from gradtx.transforms.schedule_free import (
    ScheduleFreeAveragingState,
    schedule_free_averaging,
    schedule_free_eval_params,
)
from gradtx.transforms.sign import (
    scale_by_sign,
)
from gradtx.transforms.sm3 import (
    ScaleBySm3State,
    scale_by_sm3,
)
from gradtx.transforms.switch import (
    SwitchToSgdState,
    switch_to_sgd,
)
from gradtx.transforms.trust_ratio import (
    scale_by_trust_ratio,
)
from gradtx.transforms.zoom import (
    ScaleByZoomLinesearchState,
    scale_by_zoom_linesearch,
)
from gradtx.wrappers.accumulation import (
    AccumulateGradientsState,
    accumulate_gradients,
)
from gradtx.wrappers.averaging import (
    AverageParamsState,
    average_params,
    averaged_params,
)
from gradtx.wrappers.finite import (
    ApplyIfFiniteState,
    apply_if_finite,
)
from gradtx.wrappers.flatten import (
    FlattenState,
    flatten,
)
from gradtx.wrappers.groups import (
    MaskedNode,
    MaskedState,
    masked,
    partition,
)
from gradtx.wrappers.monitors import (
    TrackNormsState,
    get_norms,
    track_norms,
)

__version__ = "0.1.0"

__all__ = [
    "AccumulateGradientsState",
    "AddInterpolatedMomentumState",
    "AddMomentumState",
    "AddNesterovMomentumState",
    "AddNoiseState",
    "AddOptimismState",
    "Anything",
    "ApplyIfFiniteState",
    "AverageParamsState",
    "CONVENTION",
    "Choice",
    "DECAY_RATE",
    "DType",
    "DifferentiallyPrivateAggregateState",
    "DualAverageState",
    "EmptyState",
    "Flag",
    "FlattenState",
    "Function",
    "GaLoreDimensionNumbers",
    "GradientMap",
    "HutchinsonState",
    "Hyper",
    "HyperparamsState",
    "INITIAL_VALUE",
    "Int",
    "LEARNING_RATE",
    "LazyState",
    "LbfgsState",
    "LookaheadState",
    "MOMENTUM",
    "Mask",
    "MaskedNode",
    "MaskedState",
    "MechanicState",
    "MixGradientState",
    "NON_NEGATIVE",
    "OptState",
    "Option",
    "OptionalFlag",
    "Params",
    "PolyakAverageState",
    "RectifyState",
    "ReduceOnPlateauState",
    "STEP",
    "SamState",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByAdditiveRmsState",
    "ScaleByBeliefState",
    "ScaleByBoundedRmsState",
    "ScaleByCoinBettingState",
    "ScaleByDadaptAdamState",
    "ScaleByDistanceOverGradientsState",
    "ScaleByDistanceOverWeightedGradientsState",
    "ScaleByFactoredRmsState",
    "ScaleByGaloreState",
    "ScaleByLbfgsState",
    "ScaleByHessianDiagonalState",
    "ScaleByInfinityNormState",
    "ScaleByLaggedBeliefState",
    "ScaleByLaggedRmsState",
    "ScaleByLayerwiseNormState",
    "ScaleByMomoAdamState",
    "ScaleByMomoState",
    "ScaleByNesterovEstimateState",
    "ScaleByProdigyState",
    "ScaleByRmsState",
    "ScaleByRpropState",
    "ScaleByRssState",
    "ScaleByZoomLinesearchState",
    "ScaleBySm3State",
    "Schedule",
    "ScheduleFreeAveragingState",
    "SwitchToSgdState",
    "TrackNormsState",
    "Transform",
    "UncountedHyperparamsState",
    "Updates",
    "WEIGHT_DECAY",
    "WhenRectifiedState",
    "accumulate_gradients",
    "acprop",
    "adabelief",
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "add_interpolated_momentum",
    "add_l2",
    "add_momentum",
    "add_nesterov_momentum",
    "add_noise",
    "add_optimism",
    "ademamix",
    "adopt",
    "amsbound",
    "amsgrad",
    "apply_if_finite",
    "apply_updates",
    "asgd",
    "average_params",
    "averaged_params",
    "bias_correct",
    "centralize",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "cocob",
    "dadapt_adamw",
    "decoupled_weight_decay",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "dual_average",
    "factory",
    "flatten",
    "from_torch_state_dict",
    "fromage",
    "galore",
    "get_hyperparams",
    "get_norms",
    "gradient",
    "hutchinson_hessian_diagonal",
    "hyperparameterized",
    "identity",
    "interpolate_gradient",
    "lamb",
    "lars",
    "lazy",
    "lbfgs",
    "lion",
    "lookahead",
    "lr_range_test",
    "madgrad",
    "masked",
    "mechanize",
    "mix_gradient",
    "momo",
    "momo_adam",
    "muon",
    "nadam",
    "named_chain",
    "noisy_sgd",
    "normalize",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "orthogonalize",
    "partition",
    "polyak_average",
    "polyak_sgd",
    "prodigy",
    "radam",
    "ranger",
    "rectify",
    "reduce_on_plateau",
    "rmsprop",
    "rprop",
    "sam",
    "scale",
    "scale_by_adadelta",
    "scale_by_additive_rms",
    "scale_by_belief",
    "scale_by_bounded_rms",
    "scale_by_coin_betting",
    "scale_by_dadapt_adam",
    "scale_by_distance_over_gradients",
    "scale_by_distance_over_weighted_gradients",
    "scale_by_factored_rms",
    "scale_by_galore",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "scale_by_hessian_diagonal",
    "scale_by_infinity_norm",
    "scale_by_lagged_belief",
    "scale_by_lagged_rms",
    "scale_by_layerwise_norm",
    "scale_by_learning_rate",
    "scale_by_momo",
    "scale_by_momo_adam",
    "scale_by_multipliers",
    "scale_by_nesterov_estimate",
    "scale_by_param_rms",
    "scale_by_polyak",
    "scale_by_prodigy",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_shape",
    "scale_by_sign",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "schedule_free_adamw",
    "schedule_free_averaging",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "sign_sgd",
    "signum",
    "simplified_ademamix",
    "sm3",
    "sophia",
    "sparse_adam",
    "stateless",
    "step_count",
    "swats",
    "switch_to_sgd",
    "to_torch_state_dict",
    "track_norms",
    "transform",
    "when_rectified",
    "yogi",
]
