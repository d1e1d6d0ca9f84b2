"""gradtx: composable, exact gradient transformations for JAX."""

from gradtx import schedules
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import ScalarOrSchedule
from gradtx._base import Schedule
from gradtx._base import Updates
from gradtx._base import apply_updates
from gradtx._base import chain
from gradtx._base import gradient
from gradtx._base import identity
from gradtx._base import named_chain
from gradtx._base import stateless
from gradtx._base import step_count
from gradtx._base import transform
from gradtx._factory import factory
from gradtx._factory_state import HyperparamsState
from gradtx._factory_state import UncountedHyperparamsState
from gradtx._hyperparameterized import hyperparameterized
from gradtx._hyperparams import get_hyperparams
from gradtx._hyperparams import set_hyperparams
from gradtx._specs import CONVENTION
from gradtx._specs import DECAY_RATE
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import MOMENTUM
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import STEP
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Anything
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx._specs import Option
from gradtx._specs import OptionalFlag
from gradtx._specs import Transform
from gradtx.lr_finder import lr_range_test
from gradtx.optimizers._lbfgs_loop import LbfgsState
from gradtx.optimizers.adafactor import adafactor
from gradtx.optimizers.adam import adam
from gradtx.optimizers.adam import adamw
from gradtx.optimizers.adam import amsgrad
from gradtx.optimizers.adamax import adamax
from gradtx.optimizers.adamax import adamaxw
from gradtx.optimizers.adan import adan
from gradtx.optimizers.adaptive import adadelta
from gradtx.optimizers.adaptive import adagrad
from gradtx.optimizers.adaptive import rmsprop
from gradtx.optimizers.ademamix import ademamix
from gradtx.optimizers.ademamix import simplified_ademamix
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.asynchronous import acprop
from gradtx.optimizers.asynchronous import adopt
from gradtx.optimizers.belief import adabelief
from gradtx.optimizers.belief import yogi
from gradtx.optimizers.bounded import adabound
from gradtx.optimizers.bounded import amsbound
from gradtx.optimizers.cocob import cocob
from gradtx.optimizers.dadapt import dadapt_adamw
from gradtx.optimizers.dadapt import prodigy
from gradtx.optimizers.distance import dog
from gradtx.optimizers.distance import dowg
from gradtx.optimizers.galore import galore
from gradtx.optimizers.large_batch import lamb
from gradtx.optimizers.large_batch import lars
from gradtx.optimizers.layerwise import fromage
from gradtx.optimizers.layerwise import novograd
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.lookahead import LookaheadState
from gradtx.optimizers.lookahead import lookahead
from gradtx.optimizers.lookahead import ranger
from gradtx.optimizers.madgrad import madgrad
from gradtx.optimizers.mechanic import MechanicState
from gradtx.optimizers.mechanic import mechanize
from gradtx.optimizers.momo import momo
from gradtx.optimizers.momo import momo_adam
from gradtx.optimizers.muon import muon
from gradtx.optimizers.nadam import nadam
from gradtx.optimizers.noisy import noisy_sgd
from gradtx.optimizers.optimistic import optimistic_adam
from gradtx.optimizers.optimistic import optimistic_adam_v2
from gradtx.optimizers.optimistic import optimistic_gradient_descent
from gradtx.optimizers.polyak import polyak_sgd
from gradtx.optimizers.privacy import dpsgd
from gradtx.optimizers.radam import radam
from gradtx.optimizers.rprop import rprop
from gradtx.optimizers.sam import SamState
from gradtx.optimizers.sam import sam
from gradtx.optimizers.schedule_free import schedule_free_adamw
from gradtx.optimizers.schedule_free import schedule_free_sgd
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sgd import sgdw
from gradtx.optimizers.sign import lion
from gradtx.optimizers.sign import sign_sgd
from gradtx.optimizers.sign import signum
from gradtx.optimizers.sm3 import sm3
from gradtx.optimizers.sophia import sophia
from gradtx.optimizers.sparse_adam import sparse_adam
from gradtx.optimizers.switching import swats
from gradtx.torch_state import from_torch_state_dict
from gradtx.torch_state import to_torch_state_dict
from gradtx.transforms.adadelta import ScaleByAdadeltaState
from gradtx.transforms.adadelta import scale_by_adadelta
from gradtx.transforms.additive_rms import ScaleByAdditiveRmsState
from gradtx.transforms.additive_rms import scale_by_additive_rms
from gradtx.transforms.averaging import PolyakAverageState
from gradtx.transforms.averaging import polyak_average
from gradtx.transforms.belief import ScaleByBeliefState
from gradtx.transforms.belief import scale_by_belief
from gradtx.transforms.block_rms import clip_by_block_rms
from gradtx.transforms.block_rms import scale_by_param_rms
from gradtx.transforms.bounds import ScaleByBoundedRmsState
from gradtx.transforms.bounds import scale_by_bounded_rms
from gradtx.transforms.centralize import centralize
from gradtx.transforms.clipping import clip
from gradtx.transforms.clipping import clip_by_global_norm
from gradtx.transforms.coin_betting import ScaleByCoinBettingState
from gradtx.transforms.coin_betting import scale_by_coin_betting
from gradtx.transforms.dadapt import ScaleByDadaptAdamState
from gradtx.transforms.dadapt import ScaleByProdigyState
from gradtx.transforms.dadapt import scale_by_dadapt_adam
from gradtx.transforms.dadapt import scale_by_prodigy
from gradtx.transforms.decay import add_l2
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.distance import ScaleByDistanceOverGradientsState
from gradtx.transforms.distance import ScaleByDistanceOverWeightedGradientsState
from gradtx.transforms.distance import scale_by_distance_over_gradients
from gradtx.transforms.distance import scale_by_distance_over_weighted_gradients
from gradtx.transforms.dual_averaging import DualAverageState
from gradtx.transforms.dual_averaging import dual_average
from gradtx.transforms.factored import ScaleByFactoredRmsState
from gradtx.transforms.factored import scale_by_factored_rms
from gradtx.transforms.hessian import HutchinsonState
from gradtx.transforms.hessian import ScaleByHessianDiagonalState
from gradtx.transforms.hessian import hutchinson_hessian_diagonal
from gradtx.transforms.hessian import scale_by_hessian_diagonal
from gradtx.transforms.infinity_norm import ScaleByInfinityNormState
from gradtx.transforms.infinity_norm import scale_by_infinity_norm
from gradtx.transforms.interpolate import interpolate_gradient
from gradtx.transforms.interpolation import AddInterpolatedMomentumState
from gradtx.transforms.interpolation import add_interpolated_momentum
from gradtx.transforms.lagged import ScaleByLaggedBeliefState
from gradtx.transforms.lagged import ScaleByLaggedRmsState
from gradtx.transforms.lagged import scale_by_lagged_belief
from gradtx.transforms.lagged import scale_by_lagged_rms
from gradtx.transforms.layerwise_norm import ScaleByLayerwiseNormState
from gradtx.transforms.layerwise_norm import scale_by_layerwise_norm
from gradtx.transforms.lazy import LazyState
from gradtx.transforms.lazy import lazy
from gradtx.transforms.low_rank import GaLoreDimensionNumbers
from gradtx.transforms.low_rank import ScaleByGaloreState
from gradtx.transforms.low_rank import scale_by_galore
from gradtx.transforms.mix import MixGradientState
from gradtx.transforms.mix import mix_gradient
from gradtx.transforms.momentum import AddMomentumState
from gradtx.transforms.momentum import AddNesterovMomentumState
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import add_nesterov_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.momo import ScaleByMomoAdamState
from gradtx.transforms.momo import ScaleByMomoState
from gradtx.transforms.momo import scale_by_momo
from gradtx.transforms.momo import scale_by_momo_adam
from gradtx.transforms.nesterov_estimate import ScaleByNesterovEstimateState
from gradtx.transforms.nesterov_estimate import scale_by_nesterov_estimate
from gradtx.transforms.noise import AddNoiseState
from gradtx.transforms.noise import add_noise
from gradtx.transforms.normalize import normalize
from gradtx.transforms.optimism import AddOptimismState
from gradtx.transforms.optimism import add_optimism
from gradtx.transforms.orthogonalize import orthogonalize
from gradtx.transforms.orthogonalize import scale_by_shape
from gradtx.transforms.plateau import ReduceOnPlateauState
from gradtx.transforms.plateau import reduce_on_plateau
from gradtx.transforms.polyak import scale_by_polyak
from gradtx.transforms.privacy import DifferentiallyPrivateAggregateState
from gradtx.transforms.privacy import differentially_private_aggregate
from gradtx.transforms.quasi_newton import ScaleByLbfgsState
from gradtx.transforms.quasi_newton import scale_by_lbfgs
from gradtx.transforms.rectify import RectifyState
from gradtx.transforms.rectify import WhenRectifiedState
from gradtx.transforms.rectify import rectify
from gradtx.transforms.rectify import when_rectified
from gradtx.transforms.rms import ScaleByRmsCorrectedMaxState
from gradtx.transforms.rms import ScaleByRmsState
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.rprop import ScaleByRpropOptaxState
from gradtx.transforms.rprop import ScaleByRpropState
from gradtx.transforms.rprop import scale_by_rprop
from gradtx.transforms.rss import ScaleByRssState
from gradtx.transforms.rss import scale_by_rss
from gradtx.transforms.scaling import scale
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.scaling import scale_by_multipliers
from gradtx.transforms.schedule_free import ScheduleFreeAveragingState
from gradtx.transforms.schedule_free import schedule_free_averaging
from gradtx.transforms.schedule_free import schedule_free_eval_params
from gradtx.transforms.sign import scale_by_sign
from gradtx.transforms.sm3 import ScaleBySm3State
from gradtx.transforms.sm3 import scale_by_sm3
from gradtx.transforms.switch import SwitchToSgdState
from gradtx.transforms.switch import switch_to_sgd
from gradtx.transforms.trust_ratio import scale_by_trust_ratio
from gradtx.transforms.zoom import ScaleByZoomLinesearchState
from gradtx.transforms.zoom import scale_by_zoom_linesearch
from gradtx.wrappers.accumulation import AccumulateGradientsState
from gradtx.wrappers.accumulation import accumulate_gradients
from gradtx.wrappers.averaging import AverageParamsState
from gradtx.wrappers.averaging import average_params
from gradtx.wrappers.averaging import averaged_params
from gradtx.wrappers.finite import ApplyIfFiniteState
from gradtx.wrappers.finite import apply_if_finite
from gradtx.wrappers.flatten import FlattenState
from gradtx.wrappers.flatten import flatten
from gradtx.wrappers.groups import MaskedNode
from gradtx.wrappers.groups import MaskedState
from gradtx.wrappers.groups import masked
from gradtx.wrappers.groups import partition
from gradtx.wrappers.monitors import TrackNormsState
from gradtx.wrappers.monitors import get_norms
from gradtx.wrappers.monitors import track_norms

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
    "ScaleByRmsCorrectedMaxState",
    "ScaleByRmsState",
    "ScaleByRpropOptaxState",
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
