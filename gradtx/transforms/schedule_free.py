"""Schedule-free averaging (Defazio et al.): interpolate between a base sequence and its average."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import float_dtype
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Hyper
from gradtx.transforms.distance import needs_params
from gradtx.wrappers.flatten import FlattenState

B1 = Hyper(low=0.0, high=1.0, low_open=True, decays=True)
"""Schedule-free's interpolation weight b1 in (0, 1]."""
WARMUP_STEPS = Hyper(low=0.0, low_open=True, integer=True, nullable=True)
"""A positive number of linear warm-up steps, or ``None`` for none."""


def warmup_learning_rate(learning_rate: Any, warmup_steps: Any, t: jax.Array) -> jax.Array:
    """``learning_rate · min(t, W) / W`` at step ``t`` (``learning_rate`` for ``W = None``),
    in the hyperparameters' dtype: optax's ``warmup_constant_schedule(0, lr, W)``."""
    lr = jnp.asarray(learning_rate).astype(float_dtype())
    if warmup_steps is None:
        return lr
    w = jnp.asarray(warmup_steps).astype(lr.dtype)
    return lr * jnp.clip(t.astype(lr.dtype), 0, w) / w


class ScheduleFreeAveragingState(NamedTuple):
    """State of ``schedule_free_averaging``.

    Attributes:
      z: the base sequence z_t (the params' dtype, or ``dtype``).
      weight_sum: Σ_{s≤t} w_s, the total averaging weight.
      max_learning_rate: max_{s≤t} η_s, whose power is each weight w_s.
      b1_of_y: the b1 with which the params y were last formed from x and z
        (the one ``schedule_free_eval_params`` inverts).
    """

    z: Params
    weight_sum: jax.Array
    max_learning_rate: jax.Array
    b1_of_y: jax.Array


@factory(counted=True, learning_rate=Hyper(low=0.0), b1=B1, weight_lr_power=NON_NEGATIVE,
         warmup_steps=WARMUP_STEPS, dtype=DType())  # fmt: skip
def schedule_free_averaging(
    learning_rate: float,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    *,
    warmup_steps: int | None = None,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Turn a base optimizer's steps into schedule-free ones (Defazio et al.).

    Place it after the base optimizer's complete step (learning rate and sign
    included, without momentum).  The params the caller holds are the
    interpolation y; the state keeps the base sequence z.  With u_t the input
    (the base step taken at y_t) and ``t`` from 1::

      z_{t+1} = z_t + u_t                                  (z_1 = y_1 = x_1)
      η̄_t = max(η̄_{t-1}, η_{t}),  w_t = η̄_t^weight_lr_power,  c_t = w_t / Σ_{s≤t} w_s
      x_{t+1} = (1 - c_t) x_t + c_t z_{t+1}               (the average: evaluate here)
      y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

    and the output is ``y_{t+1} - y_t``.  x_t is not stored: it is recovered
    from the params and z as ``(y_t - (1 - b1) z_t) / b1`` (so other
    transforms may change y in between); ``schedule_free_eval_params`` does
    the same.  η_t is ``learning_rate`` after a linear warm-up over
    ``warmup_steps``, read at the 1-based step t (the base step reads it at
    t - 1, as optax's wrapper does); ``c_t`` is 0 while every weight is 0.

    Args:
      learning_rate: the base learning rate after warm-up (the weights' scale).
      b1: interpolation weight in (0, 1].
      weight_lr_power: exponent of η̄ in the averaging weights.
      warmup_steps: length of the linear warm-up of η from 0 (``None``: none).
      dtype: storage dtype of z (``None``: the params' dtype).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.chain(gradtx.scale_by_learning_rate(0.5),
      ...                   gradtx.schedule_free_averaging(0.5, b1=0.9))
      >>> y = jnp.array([1.0, 2.0])
      >>> state = tx.init(y)
      >>> u, state = tx.update(jnp.ones(2), state, y)  # first step: x = z
      >>> u
      Array([-0.5, -0.5], dtype=float32)

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less
      Scheduled", NeurIPS 2024 (arXiv:2405.15682).
    """
    call = current_call("gradtx.schedule_free_averaging")

    def init(params):
        fdt = float_dtype()

        def z0(p):
            return jnp.array(p) if dtype is None else p.astype(_dtypes.state_dtype(p.dtype, dtype))

        return ScheduleFreeAveragingState(
            jax.tree.map(z0, params),
            jnp.zeros([], fdt),
            jnp.zeros([], fdt),
            jnp.asarray(b1).astype(fdt),
        )

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the params y, from which x is recovered")
        t = _numerics.safe_increment(step_count(extra, call))
        rate = warmup_learning_rate(learning_rate, warmup_steps, t)
        max_rate = jnp.maximum(state.max_learning_rate, rate)
        weight = max_rate ** jnp.asarray(weight_lr_power).astype(rate.dtype)
        weight_sum = state.weight_sum + weight
        c = _numerics.div0(weight, weight_sum)  # 0 while every weight is 0
        beta = jnp.asarray(b1).astype(rate.dtype)
        old = state.b1_of_y.astype(rate.dtype)
        # y_{t+1} - y_t = b1 c (z_{t+1} - x_t) + (1 - b1)(z_{t+1} - z_t) + (b1 - b1_old)(x_t - z_t)
        # with x_t - z_t = (y_t - z_t) / b1_old: one scalar for each of the two
        # differences, so each element costs two products and no division, and a
        # step that moves neither z nor x moves nothing.
        along_z = beta * c + 1 - beta
        along_y = (beta - old - beta * c) / old

        def one(u, y, z):
            wide = _dtypes.compute_dtype(u.dtype, y.dtype, z.dtype)
            z_new = (z.astype(wide) + u.astype(wide)).astype(z.dtype)
            z_old = z.astype(wide)
            step = along_z.astype(wide) * (z_new.astype(wide) - z_old)
            step = step + along_y.astype(wide) * (y.astype(wide) - z_old)
            return step.astype(u.dtype), z_new

        treedef = jax.tree.structure(updates)
        pairs = [
            one(u, y, z)
            for u, y, z in zip(
                treedef.flatten_up_to(updates),
                treedef.flatten_up_to(params),
                treedef.flatten_up_to(state.z),
            )
        ]
        out = treedef.unflatten([p[0] for p in pairs])
        z = treedef.unflatten([p[1] for p in pairs])
        return out, ScheduleFreeAveragingState(z, weight_sum, max_rate, beta)

    return GradientTransformation(init, update)


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    """The averaged params x at which to evaluate a schedule-free optimizer.

    ``x = (y - (1 - b1) z) / b1`` leaf by leaf, from the params y the caller
    holds and the z and b1 that ``schedule_free_averaging`` keeps in ``state``
    (any gradtx state holding exactly one, e.g. ``schedule_free_adamw``'s, also
    as one group of a ``partition``: the other groups' params come back as given).
    Each leaf keeps its dtype.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.schedule_free_sgd(1.0, b1=0.5)
      >>> y = {"w": jnp.zeros(1)}
      >>> state = opt.init(y)
      >>> for _ in range(2):  # a constant gradient 1: z = -1, then -2
      ...     updates, state = opt.update({"w": jnp.ones(1)}, state, y)
      ...     y = gradtx.apply_updates(y, updates)
      >>> y["w"]  # y = 0.5 x + 0.5 z with x = (-1 + -2) / 2
      Array([-1.75], dtype=float32)
      >>> gradtx.schedule_free_eval_params(state, y)["w"]  # x = (-1.75 - 0.5 · -2) / 0.5
      Array([-1.5], dtype=float32)
    """
    call = "gradtx.schedule_free_eval_params"
    for flat in _tree.nodes(state, FlattenState):
        if _tree.nodes(flat, ScheduleFreeAveragingState):
            raise ValueError(
                f"{call}: the schedule-free optimizer is inside gradtx.flatten, whose flat "
                "buffers do not keep the params' tree, so z cannot be read per leaf; keep "
                "schedule-free optimizers outside flatten"
            )
    found = _tree.nodes(state, ScheduleFreeAveragingState)
    if len(found) != 1:
        raise ValueError(
            f"{call}: the state holds {len(found)} schedule_free_averaging states; expected "
            "one (pass the state of a schedule-free optimizer, such as schedule_free_adamw's)"
        )
    averaging = found[0]

    # A one-leaf wrapper (nnx's Param around a param, OptArray around a state leaf) is
    # looked through: nnx.state(model, nnx.Param) goes with optimizer.opt_state.
    def wrapped(x: Any) -> bool:  # a one-leaf node that is not a container
        return not isinstance(x, (Mapping, list, tuple)) and _tree.bare(x) is not x

    # A leaf a partition or mask hides from the optimizer (its z is a MaskedNode), or a
    # frozen None, is not averaged: its params are given back as they are.
    hidden = _tree.leafless

    def leafy(x: Any) -> bool:
        return wrapped(x) or hidden(x)

    params_def, z_def = (jax.tree.structure(t, is_leaf=leafy) for t in (params, averaging.z))
    if str(params_def) != str(z_def):
        raise ValueError(
            f"{call}: the params' tree does not match the optimizer's.\n"
            f"  params: {params_def}\n  state: {z_def}"
        )
    leaves = jax.tree_util.tree_leaves_with_path(params, is_leaf=leafy)
    for (path, y), z in zip(leaves, jax.tree.leaves(averaging.z, is_leaf=leafy)):
        if hidden(z) or hidden(y):
            continue
        if jnp.shape(_tree.bare(y)) != jnp.shape(_tree.bare(z)):  # broadcasting: wrong shapes
            raise ValueError(
                f"{call}: params leaf {jax.tree_util.keystr(path)} has shape "
                f"{jnp.shape(_tree.bare(y))}, the optimizer's {jnp.shape(_tree.bare(z))}"
            )

    def one(given, z):
        if hidden(z) or hidden(given):
            return given
        y, z = jnp.asarray(_tree.bare(given)), _tree.bare(z)
        wide = _dtypes.compute_dtype(y.dtype, z.dtype)
        b1 = jnp.asarray(_tree.bare(averaging.b1_of_y))
        rest = _numerics.one_minus(b1, wide)
        x = ((y.astype(wide) - rest * z.astype(wide)) / b1.astype(wide)).astype(y.dtype)
        return jax.tree.map(lambda _: x, given) if wrapped(given) else x  # in its wrapper

    return jax.tree.map(one, params, averaging.z, is_leaf=leafy)
