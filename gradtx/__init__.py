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
from gradtx.optimizers.sgd import sgd, sgdw
from gradtx.transforms.clipping import clip, clip_by_global_norm
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import (
    AddMomentumState,
    BiasCorrectState,
    add_momentum,
    bias_correct,
)
from gradtx.transforms.rms import ScaleByRmsState, scale_by_rms
from gradtx.transforms.scaling import ScaleByScheduleState, scale, scale_by_learning_rate
from gradtx.wrappers.accumulation import AccumulateGradientsState, accumulate_gradients
from gradtx.wrappers.finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers.groups import MaskedNode, MaskedState, masked, partition
from gradtx.wrappers.monitors import TrackNormsState, get_norms, track_norms

__version__ = "0.1.0"

__all__ = [
    "AccumulateGradientsState",
    "AddMomentumState",
    "ApplyIfFiniteState",
    "BiasCorrectState",
    "EmptyState",
    "GradientMap",
    "HyperparamsState",
    "MaskedNode",
    "MaskedState",
    "ScaleByRmsState",
    "ScaleByScheduleState",
    "TrackNormsState",
    "accumulate_gradients",
    "adam",
    "adamw",
    "add_l2",
    "add_momentum",
    "amsgrad",
    "apply_if_finite",
    "apply_updates",
    "bias_correct",
    "chain",
    "clip",
    "clip_by_global_norm",
    "decoupled_weight_decay",
    "get_hyperparams",
    "get_norms",
    "hyperparameterized",
    "identity",
    "masked",
    "named_chain",
    "partition",
    "scale",
    "scale_by_learning_rate",
    "scale_by_rms",
    "set_hyperparams",
    "sgd",
    "sgdw",
    "stateless",
    "track_norms",
]
