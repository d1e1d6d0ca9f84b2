"""Lookahead on plain params, and Ranger (RAdam + gradient centralisation + Lookahead)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._base import extras_for
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx._specs import Transform
from gradtx.optimizers.radam import RADAM
from gradtx.optimizers.radam import radam
from gradtx.transforms.centralize import centralize
from gradtx.transforms.rectify import THRESHOLD

SLOW_STEP_SIZE = Hyper(low=0.0, high=1.0)


class LookaheadState(NamedTuple):
    """``steps_since_sync``: fast steps since the last sync (0..k-1);
    ``slow``: the slow weights φ; ``inner_state``: the inner optimizer's state."""

    steps_since_sync: jax.Array
    slow: Params
    inner_state: OptState


def _lookahead(inner, sync_period, slow_step_size):
    call = current_call("gradtx.lookahead")

    def init(params):
        if isinstance(params, optax.LookaheadParams):  # optax's pair: φ lives in the state here
            raise TypeError(
                f"{call}.init: got optax.LookaheadParams; gradtx.lookahead takes the plain "
                "params (the fast weights) and keeps the slow ones in its state: init(params."
                "fast), and update(grads, state, params) with the plain params after"
            )
        slow = jax.tree.map(jnp.array, params)  # a copy: φ_0 = θ_0
        return LookaheadState(jnp.zeros([], jnp.int32), slow, inner.init(params))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(f"{call}: update needs params (the fast weights, to sync them)")
        updates, inner_state = inner.update(
            updates, state.inner_state, params, **extras_for(inner, extra)
        )
        # >=: a state saved with a longer period syncs at once instead of never
        sync = state.steps_since_sync >= sync_period - 1

        def slow_step(p, u, s):
            # φ_new = φ + α(θ + u − φ)
            fast = p.astype(s.dtype) + u.astype(s.dtype)
            return s + _tree.scalar_like(slow_step_size, s) * (fast - s)

        # Two maps, not one map to pairs: params trees may hold tuples themselves.
        new_slow = jax.tree.map(slow_step, params, updates, state.slow)
        # Emit φ_new − θ so that θ + update = φ_new.
        sync_updates = jax.tree.map(
            lambda ns, p, u: (ns - p.astype(ns.dtype)).astype(u.dtype), new_slow, params, updates
        )
        pick = lambda a, b: jnp.where(sync, a, b)  # noqa: E731
        out = jax.tree.map(pick, sync_updates, updates)
        slow = jax.tree.map(pick, new_slow, state.slow)
        steps = jnp.where(sync, 0, state.steps_since_sync + 1).astype(jnp.int32)
        return out, LookaheadState(steps, slow, inner_state)

    return GradientTransformation(init, update)


@optimizer(
    references="`pytorch_optimizer.Lookahead` (around SGD-momentum and Adam); `optax.lookahead` "
    "(fast params)",
    counted=False,
    inner=Transform(),
    sync_period=Int(1),
    slow_step_size=SLOW_STEP_SIZE,
)
def lookahead(
    inner: optax.GradientTransformation, sync_period: int = 5, slow_step_size: float = 0.5
) -> GradientTransformation:
    """Lookahead (Zhang et al.) around any optimizer, on plain params.

    The params you hold are the fast weights θ; the slow weights φ live in the
    state (``φ_0 = θ_0``, so ``init`` needs the real params).  Each step runs the
    inner optimizer, ``u_t = inner(g_t)``; every ``sync_period``-th step
    (k-th, 2k-th, ...) the emitted update is replaced so that the params become
    the interpolated slow weights::

      φ ← φ + α (θ + u_t − φ),   θ ← φ        (α = slow_step_size)

    The sync is an update, ``φ − θ`` rounded to the params' dtype, so ``θ +
    (φ − θ)`` is φ within about one ulp of the larger of θ and φ (in bfloat16
    a visible step from the φ kept in the state, which torch-style
    implementations copy exactly).  Between syncs the updates are the inner
    ones.  The inner state is kept across syncs (the official code's
    ``pullback_momentum="none"``).  Updates
    are ordinary updates: apply them with ``apply_updates``, take gradients at
    the params, and chain further transforms after it if you like (each step
    uses the params it is given, so the slow weights stay consistent with
    them; a later transform that changes the sync update moves the params
    away from φ by exactly that change).

    Build the inner optimizer as usual (``gradtx.adam(1e-3)``, or any optax
    transform): its hyperparameters and step count stay in its own state, so
    ``get_hyperparams`` shows them next to ``slow_step_size``.  Like every
    named optimizer it takes its input as the gradient: placed in a chain
    after a member that is not a gradient map, its inner's statistics see
    that member's output, not the chain's gradient (``average_params`` and
    ``lazy``, which wrap an optimizer from outside, pass the gradient on).

    Chain: ``inner``, with every ``sync_period``-th update replaced by the
    move to the interpolated slow weights.

    Differences: ``optax.lookahead`` needs ``LookaheadParams(fast, slow)`` in
    place of the params; its fast trajectory equals this one.  Equal to
    ``pytorch_optimizer.Lookahead`` (default α 0.5, as here) and the authors'
    code (default α 0.8).  ``torch_optimizer.Lookahead`` starts φ at θ_1 and syncs after steps
    1, k+1, 2k+1, ... (a bug; not reproduced).

    Args:
      inner: the fast optimizer (gradtx or optax transform).
      sync_period: k ≥ 1, fast steps per sync (static).
      slow_step_size: α in [0, 1] (stored in state, settable).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.lookahead(gradtx.sgd(1.0), sync_period=2, slow_step_size=0.5)
      >>> params = {"w": jnp.zeros(1)}  # φ_0 = 0
      >>> state = opt.init(params)
      >>> for _ in range(2):  # SGD steps of -1: θ = -1, then θ + u_2 = -2 at the sync
      ...     updates, state = opt.update({"w": jnp.ones(1)}, state, params)
      ...     params = gradtx.apply_updates(params, updates)
      >>> params["w"]  # φ = 0 + 0.5 (-2 - 0): the sync's update is 0 (SGD alone: -2)
      Array([-1.], dtype=float32)
      >>> sorted(gradtx.get_hyperparams(state))  # the inner's, next to slow_step_size
      ['learning_rate', 'slow_step_size']

    References:
      Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step
      back", NeurIPS 2019 (arXiv:1907.08610).
    """
    return _lookahead(inner, sync_period, slow_step_size)


@optimizer(
    references="`pytorch_optimizer.Ranger(degenerated_to_sgd=True)` (GC on 2-D/3-D/4-D params); "
    "`pytorch_ranger.Ranger` = `torch_optimizer.Ranger` with GC off (rel 1e-6: that package "
    "computes in float32)",
    learning_rate=RADAM["learning_rate"], b1=RADAM["b1"], b2=RADAM["b2"], eps=RADAM["eps"],
    sync_period=Int(1), slow_step_size=SLOW_STEP_SIZE, threshold=THRESHOLD,
    weight_decay=RADAM["weight_decay"], gradient_centralization=Flag(), gc_conv_only=Flag(),
    channel_axis=Int(low=None), mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def ranger(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.95,
    b2: float = 0.999,
    eps: float = 1e-5,
    *,
    sync_period: int = 6,
    slow_step_size: float = 0.5,
    threshold: float = 5.0,
    weight_decay: ScalarOrSchedule | None = None,
    gradient_centralization: bool = True,
    gc_conv_only: bool = False,
    channel_axis: int = 0,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Ranger (Wright 2019/2020): RAdam with gradient centralisation, inside Lookahead.

    Update (``t`` from 1; the RAdam step as in ``radam``, SGD-with-momentum
    before the threshold, strict ``>``)::

      g_t ← g_t − mean of g_t over each output channel      (2-D and larger leaves)
      θ'  = θ_{t-1} − η (d_t + λ θ_{t-1})                     (RAdam, decoupled decay)
      every k-th step: φ ← φ + α (θ' − φ),  θ_t = φ           (Lookahead, φ_0 = θ_0)

    Chain: ``lookahead(chain(centralize, add_momentum(b1, ema=True),
    bias_correct(b1), rectify(b2, eps, threshold), decoupled_weight_decay,
    scale_by_learning_rate), sync_period, slow_step_size)``; every number is
    stored once, in this optimizer's state.

    Differences: equals the official Ranger (lessw2020, "20.4.11") and
    ``pytorch_optimizer.Ranger(degenerated_to_sgd=True)``.  The latter's
    default ``degenerated_to_sgd=False`` steps *up* the gradient for t < 6 (its
    step size is −η); not reproduced.  ``pytorch_ranger.Ranger`` (=
    ``torch_optimizer.Ranger``) is the 2019 version without centralisation:
    ``gradient_centralization=False``.  The official ``use_gc`` flag is never
    read (always on); here ``gradient_centralization`` works.  Defaults β1 =
    0.95, eps = 1e-5, k = 6 are the reference code's, not RAdam's.

    Args:
      learning_rate: η, a number or schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root of the second moment.
      sync_period: Lookahead's k (static).
      slow_step_size: Lookahead's α.
      threshold: RAdam's ρ_t threshold (strict), at least 4.
      weight_decay: λ of the decoupled decay ``θ(1 − ηλ)``.
      gradient_centralization: centralise leaves with two or more axes.
      gc_conv_only: centralise only leaves with four or more axes.
      channel_axis: output-channel axis for centralisation (``-1`` for Flax
        and Haiku kernels; see ``centralize``).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.ranger(1e-2)
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}
      >>> grads = {"w": jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]), "b": jnp.ones(2)}
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> # t = 1 is before RAdam's threshold: -η m̂_1 = -η g, of the centred g for the
      >>> # 2-D "w" (rows minus their means 2 and 1: -1, 0, 1; -1, -1, 2); "b" as is
      >>> updates
      {'b': Array([-0.01, -0.01], dtype=float32), 'w': Array([[ 0.01, -0.  , -0.01],
             [ 0.01,  0.01, -0.02]], dtype=float32)}

    References:
      Wright, Ranger-Deep-Learning-Optimizer (GitHub), 2019-2020; Liu et al.
      2020 (RAdam); Zhang et al. 2019 (Lookahead); Yong et al. 2020 (GC).
    """
    head = []
    if gradient_centralization:
        head = [centralize(channel_axis=channel_axis, conv_only=gc_conv_only)]
    fast = radam(
        learning_rate, b1, b2, eps, threshold=threshold, weight_decay=weight_decay,
        decoupled_weight_decay=True, mask=mask, mask_fn=mask_fn,
    )  # fmt: skip
    return _lookahead(chain(*head, fast), sync_period, slow_step_size)
