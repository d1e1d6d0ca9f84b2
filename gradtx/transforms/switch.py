"""Switching from an adaptive method to SGD with momentum (SWATS's mechanism)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _numerics
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._base import extras_for
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._factory_state import UncountedHyperparamsState
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx._specs import Transform


class SwitchToSgdState(NamedTuple):
    """State of ``switch_to_sgd``.

    Attributes:
      adaptive: the adaptive transform's state (frozen after the switch).
      gamma_avg: ``λ_k``, the EMA of the projected SGD rates ``γ_k``.
      trace: ``v_k``, the SGD momentum buffer (zero until the switch).
      switch: the switch's outcome, kept as hyperparameters so that
        ``gradtx.get_hyperparams`` reads and ``gradtx.set_hyperparams`` sets it:
        ``switched`` (bool), ``switch_step`` (int32, the ``k`` of the switch,
        0 before) and ``sgd_learning_rate`` (``Λ``, 0 before).  Scalars, or one
        entry per leaf (``jax.tree.leaves`` order) with ``per_leaf``.
    """

    adaptive: Any
    gamma_avg: jax.Array
    trace: Any
    switch: UncountedHyperparamsState


def _switch_to_sgd(adaptive, momentum, decay, tolerance, nesterov, per_leaf):
    call = current_call("gradtx.switch_to_sgd")

    def init(params):
        shape = (len(jax.tree.leaves(params)),) if per_leaf else ()
        dtype = float_dtype()
        outcome = {
            "switched": jnp.zeros(shape, jnp.bool_),
            "switch_step": jnp.zeros(shape, jnp.int32),
            "sgd_learning_rate": jnp.zeros(shape, dtype),
        }
        return SwitchToSgdState(
            adaptive.init(params),
            jnp.zeros(shape, dtype),
            _tree.zeros_like(params),
            UncountedHyperparamsState(outcome, EmptyState()),
        )

    def update(updates, state, params=None, **extra):
        g = gradient(updates, extra)
        count = _numerics.safe_increment(step_count(extra, call))
        outcome = state.switch.hyperparams
        if per_leaf:
            _tree.check_per_leaf(call, "gradtx.switch_to_sgd(per_leaf=True)")
        switched, rate = outcome["switched"], outcome["sgd_learning_rate"]
        p, adaptive_state = adaptive.update(
            updates, state.adaptive, params, **extras_for(adaptive, extra)
        )

        # Projection of the adaptive step p on the gradient (Alg. 1): the SGD rate
        # γ along -g whose step has p as its projection.  Dots in the stored
        # float dtype, summed over the tree unless per_leaf.
        leaves_v, treedef = jax.tree.flatten(state.trace)
        leaves_g, leaves_p = jax.tree.leaves(g), jax.tree.leaves(p)
        if not leaves_v:  # no leaf, so never switched
            return p, state._replace(adaptive=adaptive_state)
        dt = state.gamma_avg.dtype

        def dot(a, b):  # vdot as a sum: reductions of sharded leaves need no out_sharding
            if jnp.iscomplexobj(a):  # Re <a, b> of C^n as R^2n, the real projection
                return dot(jnp.real(a), jnp.real(b)) + dot(jnp.imag(a), jnp.imag(b))
            return jnp.sum(a.astype(dt) * b.astype(dt))

        pg = jnp.stack([dot(a, b) for a, b in zip(leaves_p, leaves_g)])
        pp = jnp.stack([dot(a, a) for a in leaves_p])
        if not per_leaf:
            pg, pp = jnp.sum(pg), jnp.sum(pp)
        moved = pg != 0  # no estimate (and no NaN) when p ⟂ g, e.g. a zero gradient
        gamma = jnp.where(moved, pp / -jnp.where(moved, pg, -1), 0)
        b2 = _tree.scalar_like(decay, gamma)
        gamma_avg = jnp.where(moved, b2 * state.gamma_avg + (1 - b2) * gamma, state.gamma_avg)
        estimate = gamma_avg / _numerics.bias_correction(b2, count)
        close = jnp.abs(estimate - gamma) < _tree.scalar_like(tolerance, gamma)
        switch_now = ~switched & moved & (count > 1) & close

        # SGD with momentum in EMA form, selected per leaf (or for all leaves).
        new_trace, out = [], []
        for i, (v, gi, pi) in enumerate(zip(leaves_v, leaves_g, leaves_p)):
            on = switched[i] if per_leaf else switched
            b1, gi = _tree.scalar_like(momentum, v), gi.astype(v.dtype)
            v_new = b1 * v + gi
            direction = gi + b1 * v_new if nesterov else v_new
            lr = _tree.scalar_like(rate[i] if per_leaf else rate, v)
            new_trace.append(jnp.where(on, v_new, jnp.zeros_like(v)))
            out.append(jnp.where(on, (-(1 - b1) * lr * direction).astype(pi.dtype), pi))

        # The paper's `continue`: the adaptive statistics stop once switched.  The inner
        # state is not laid out per leaf, so with per_leaf they stop when all have.
        adaptive_state = jax.tree.map(
            lambda old, new: jnp.where(jnp.all(switched), old, new), state.adaptive, adaptive_state
        )
        outcome = {
            "switched": switched | switch_now,
            "switch_step": jnp.where(switch_now, count, outcome["switch_step"]),
            "sgd_learning_rate": jnp.where(switch_now, estimate, rate),
        }
        new_state = SwitchToSgdState(
            adaptive_state,
            jnp.where(switched, state.gamma_avg, gamma_avg),
            jax.tree.unflatten(treedef, new_trace),
            UncountedHyperparamsState(outcome, EmptyState()),
        )
        return jax.tree.unflatten(treedef, out), new_state

    return GradientTransformation(init, update)


@factory(counted=True, adaptive=Transform(), momentum=DECAY_RATE, decay=DECAY_RATE,
         tolerance=NON_NEGATIVE, nesterov=Flag(), per_leaf=Flag())  # fmt: skip
def switch_to_sgd(
    adaptive: optax.GradientTransformation,
    momentum: float = 0.9,
    decay: float = 0.999,
    tolerance: float = 1e-9,
    *,
    nesterov: bool = False,
    per_leaf: bool = False,
) -> GradientTransformation:
    """Run ``adaptive`` until a projected SGD rate settles, then SGD with momentum.

    SWATS's switch (Keskar & Socher, Alg. 1), around any transform whose output
    ``p_k`` is a full (negative, learning-rate-scaled) step.  With ``g_k`` the
    gradient (the chain's ``grads`` keyword if given, else the input)::

      adaptive phase:  out = p_k;  if p_kᵀg_k ≠ 0:
          γ_k = p_kᵀp_k / (-p_kᵀg_k)
          λ_k = decay λ_{k-1} + (1 - decay) γ_k
          switch if k > 1 and |λ_k / (1 - decay^k) - γ_k| < tolerance,
          with Λ = λ_k / (1 - decay^k)
      SGD phase (from the next update):  v_k = momentum v_{k-1} + g_k
          out = -(1 - momentum) Λ v_k      (Nesterov: -(1 - momentum) Λ (g_k + momentum v_k))

    The dot products run over the whole tree (one switch for the model) or,
    with ``per_leaf``, leaf by leaf (one switch per leaf).  Both phases are
    computed and selected with ``jnp.where``: no Python control flow, so it
    jits, vmaps and never retraces.  The adaptive state stops changing after
    the switch; with ``per_leaf``, once every leaf has switched (the inner
    state is not laid out per leaf, so a leaf that switched earlier keeps
    updating its unused statistics until then; its steps are SGD's).

    The outcome lives in the state's ``switch`` entry as hyperparameters:
    ``gradtx.get_hyperparams(state)`` shows ``switched``, ``switch_step`` and
    ``sgd_learning_rate``; ``set_hyperparams`` can force a switch or change Λ.

    Args:
      adaptive: the transform of the first phase (its output is the step).
      momentum: β1 of the SGD phase (EMA form), in [0, 1).
      decay: β2 of the EMA of γ and of its bias correction, in [0, 1).
      tolerance: ε of the switch test (absolute).
      nesterov: Nesterov's look-ahead in the SGD phase.
      per_leaf: estimate and switch leaf by leaf instead of for the whole tree.
    """
    return _switch_to_sgd(adaptive, momentum, decay, tolerance, nesterov, per_leaf)
