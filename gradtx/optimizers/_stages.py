"""The stages every named optimizer shares: where the gradient's sign and the
weight decay go, and the learning rate at the end."""

from __future__ import annotations

from typing import Any

import optax

from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import chain
from gradtx.transforms.decay import add_l2
from gradtx.transforms.decay import check_mask_pair
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.scaling import scale
from gradtx.transforms.scaling import scale_by_learning_rate


def gradient_stages(
    weight_decay: Any = None,
    *,
    decoupled: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
) -> list[optax.GradientTransformation]:
    """The gradient maps at the head: ``-g`` (maximize), then ``+ λθ`` (L2), as torch orders them."""
    check_mask_pair(mask, mask_fn)
    head = [scale(-1.0)] if maximize else []
    if weight_decay is not None and not decoupled:
        head.append(add_l2(weight_decay, mask=mask, mask_fn=mask_fn))
    return head


def descent(
    *core: optax.GradientTransformation,
    learning_rate: Any,
    weight_decay: Any = None,
    decoupled: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """An optimizer's chain: ``[-g] [+λθ L2] core... [+λθ decoupled] × -η``.

    ``weight_decay=None`` (a pruned zero) leaves both decay stages out; with
    ``decoupled`` the decay is added after the adaptive step and multiplied by
    the learning rate (AdamW's ``θ(1 - ηλ)``), else it enters every statistic
    (L2, torch's ``weight_decay``).
    """
    head = gradient_stages(
        weight_decay, decoupled=decoupled, mask=mask, mask_fn=mask_fn, maximize=maximize
    )
    tail = []
    if weight_decay is not None and decoupled:
        tail.append(decoupled_weight_decay(weight_decay, mask=mask, mask_fn=mask_fn))
    return chain(*head, *core, *tail, scale_by_learning_rate(learning_rate))
