"""Resilient propagation: per-element step sizes grown and shrunk by the gradient's sign."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _checks
from gradtx import _control
from gradtx import _dtypes
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import CONVENTION
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Hyper

ETA_MINUS = Hyper(low=0.0, high=1.0, low_open=True, high_open=True)
"""Rprop's shrink factor, in (0, 1) (torch's check)."""
ETA_PLUS = Hyper(low=1.0, low_open=True)
"""Rprop's growth factor, > 1 (torch's check)."""


class ScaleByRpropState(NamedTuple):
    """``step_size``: Δ, one step size per element (torch's ``step_size``);
    ``base``: the learning rate Δ stands for (the last update's, or torch's current
    one after ``from_torch_state_dict``).  The next update starts from
    ``step_size · learning_rate / base`` (from ``step_size`` where base is 0).
    Before the first update both are the learning rate ``init`` saw, so that Δ_0 is
    the learning rate at the first update: exactly, or within a rounding if it was
    set since (from a rate of 0, exactly under torch's rule; optax's keeps 0).
    ``prev``: the last gradient, zeroed where its sign flipped (torch's ``prev``)."""

    step_size: Updates
    prev: Updates
    base: jax.Array


class ScaleByRpropOptaxState(NamedTuple):
    """State of ``scale_by_rprop(convention="optax")``: ``step_size`` and ``base`` as in
    ``ScaleByRpropState``; ``prev_update``: the last update ``Δ·sign(g)``, zeroed where
    the sign flipped (optax's ``prev_updates``).  A class of its own: torch's rule keeps
    a gradient there, so a state of one rule is refused by the other."""

    step_size: Updates
    prev_update: Updates
    base: jax.Array


def _by_part(fn, *xs):
    """``fn`` on real arrays; a complex leaf is two real ones (torch's ``view_as_real``)."""
    if not jnp.iscomplexobj(xs[0]):
        return fn(*xs)
    real = fn(*(jnp.real(x) for x in xs))
    imag = fn(*(jnp.imag(x) for x in xs))
    return tuple(jax.lax.complex(r, i) for r, i in zip(real, imag))


def _factors(count, lr, base, plus, minus, lo):
    """``(r, r·eta_plus, r·eta_minus, floor)``: ``r = lr / base`` the step sizes'
    rescaling (1 where ``base`` is 0: Δ grown from a zero rate has no ratio), and the
    lower bound torch's rule clips to.  That bound is ``max(lr, min_step_size)`` at
    the first update of a state made with a rate of 0 (Δ = 0 then): torch's
    ``clip(lr)`` for Δ_0, whatever rate was set since ``init``, with no additive term
    per element.  Folded into the factors each element's Δ is multiplied by anyway,
    the rescaling costs no operation per element but the one where optax's rule
    holds Δ; computed once (``_control.once``), these scalar ops are not copied into
    every leaf's kernel.  With a multiply-add per element and a select on "first
    step" instead, the step compiled in 1.3x the time of
    ``optax.inject_hyperparams(optax.rprop)`` (benchmarks/NOTES.md section 35)."""
    ratio = _step_size_ratio(lr, base)
    floor = jnp.where((count == 0) & (base == 0), jnp.maximum(lr, lo), lo)
    return ratio, ratio * plus, ratio * minus, floor


def _step_size_ratio(lr: Any, base: Any) -> jax.Array:
    """``lr / base``, by which a new learning rate rescales the step sizes kept for
    ``base``; 1 where ``base`` is 0 (Δ grown from a zero rate has no ratio).  Where the
    two are equal the quotient is 1 exactly: no select on it, so d/dlr flows there."""
    lr, base = jnp.asarray(lr), jnp.asarray(base)
    positive = base > 0
    return jnp.where(
        positive, lr / jnp.where(positive, base, jnp.ones_like(base)), jnp.ones_like(lr)
    )


def _check_order(call: str, low: Any, high: Any) -> None:
    """``min_step_size <= max_step_size`` where both are known, compared as stored
    (a float32 array of 0.1 against the number 0.1 is equal in float32)."""
    known = [_checks.known_value(v) for v in (low, high)]
    if not all(map(_checks.is_concrete_number, known)):
        return
    stored = [float(np.asarray(v, float_dtype())) for v in known]
    if stored[0] > stored[1]:
        raise ValueError(
            f"{call}(min_step_size={_checks.shown(low)}, max_step_size={_checks.shown(high)}): "
            "min_step_size must not exceed max_step_size"
        )


def check_step_sizes(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``derive`` of the Rprop factories: the bounds' order, for known arrays too.  It
    runs where the factory checks its arguments (each eager call: every eager update
    under ``optax.inject_hyperparams``; not inside another factory's body, where the
    body's own check of numbers runs); ``set_hyperparams`` checks each bound alone."""
    _check_order(call, arguments["min_step_size"], arguments["max_step_size"])
    return arguments


@factory(counted=True, learning_rate=LEARNING_RATE, eta_minus=ETA_MINUS, eta_plus=ETA_PLUS,
         min_step_size=NON_NEGATIVE, max_step_size=NON_NEGATIVE, convention=CONVENTION,
         derive=check_step_sizes)  # fmt: skip
def scale_by_rprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    convention: str = "torch",
) -> GradientTransformation:
    """Rprop's step: ``Δ · sign(g)`` with one step size Δ per element.

    torch's rule (``torch.optim.Rprop``), with ``p = sign(g_t) · sign(prev)``::

      Δ_t  = clip(Δ_{t-1} · (eta_plus if p > 0, eta_minus if p < 0, 1 if p = 0),
                  min_step_size, max_step_size)                (Δ_0 = learning_rate)
      g'_t = 0 where p < 0, else g_t;   out = sign(g'_t) · Δ_t;   prev ← g'_t

    Where the sign flips, the element takes no step and forgets its gradient,
    so the next step neither grows nor shrinks its Δ.  Only the gradient's sign
    matters; the output is the (positive) step, flip it with ``scale(-1)``.
    torch forms ``g_t · prev``, which underflows to 0 for gradients below about
    4e-23 in float32: there torch's Δ stops growing and gradtx's does not.

    ``convention="optax"`` is ``optax.scale_by_rprop`` (0.2.8) exactly: the state
    (``ScaleByRpropOptaxState``) holds the last update ``Δ·sign(g)`` as
    ``prev_update`` in place of ``prev``, Δ is left unclipped where ``p = 0``
    (torch clips ``learning_rate`` into the bounds at the first step), and the
    output is the *previous* step's update, zeroed where the sign flips: every
    update lags one step and the first is zero (optax PR #1725, open, calls
    this a bug; gradtx reproduces it only under this convention).

    ``learning_rate`` is the initial step size Δ_0, not a multiplier: each
    element's Δ then evolves on its own.  Δ_0 is taken at the first update
    (like torch, which builds its state at the first ``step``), so a value set
    with ``set_hyperparams`` before it is used (as the init's Δ times new / old:
    within a rounding of the value; from a rate of 0, torch's ``clip(lr)``
    exactly, while optax's rule, which reads the rate only at ``init``, keeps Δ =
    0).  Under ``gradtx.lazy`` an element's Δ changes only at updates where it
    has an entry, by that update's ratio alone: rates changed while it had none
    are not applied to it, and from a rate of 0 at ``init`` an element without
    an entry at the first update starts from ``min_step_size``.  Set later, a new value
    rescales every Δ by ``r = new / old`` (then the bounds apply), and likewise
    a schedule rescales them at each step; with a constant learning rate this is
    torch's rule exactly.  The ratio is folded into the step's factor, ``Δ ·
    (r·eta_plus)`` rather than ``(Δ·r) · eta_plus`` (within a rounding of each
    other; equal when ``r = 1``).  Under optax's rule the update a step emits
    was computed the step before, so a new learning rate shows in the updates
    one step later, like everything else there.  Step sizes grown from a zero
    learning rate are not rescaled (there is no ratio).  A complex leaf is two
    real ones, as in torch.

    Args:
      learning_rate: Δ_0 ≥ 0, the initial step size (a number or schedule).
      eta_minus: shrink factor in (0, 1), after a sign change (torch's ``etas[0]``).
      eta_plus: growth factor > 1, while the sign holds (torch's ``etas[1]``).
      min_step_size, max_step_size: the bounds of Δ (torch's ``step_sizes``).
      convention: ``"torch"`` or ``"optax"`` (the rule above).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_rprop(0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([3.0, -1.0]), state)
      >>> tx.update(jnp.array([2.0, 1.0]), state)[0]  # same sign: x1.2; flipped: no step
      Array([0.12, 0.  ], dtype=float32)

    References:
      Riedmiller & Braun, "A direct adaptive method for faster backpropagation
      learning: the RPROP algorithm", ICNN 1993.
    """
    if all(map(_checks.is_concrete_number, (min_step_size, max_step_size))):
        # numbers only (stored ones are arrays at update): inside a user's factory,
        # which runs no derive of this one
        _check_order(current_call("gradtx.scale_by_rprop"), min_step_size, max_step_size)

    def rate():
        return jnp.asarray(learning_rate).astype(float_dtype())

    def initial(p, lr):  # Δ_0 = lr, on both parts of a complex leaf
        return jax.lax.complex(lr, lr) if jnp.iscomplexobj(p) else lr

    state_class = ScaleByRpropState if convention == "torch" else ScaleByRpropOptaxState

    def init(params):
        # Δ = base = lr: the first update's ratio is 1 (lr unchanged) or new / old (set
        # since).  Δ holds its own value, not one relative to the scalar base: under
        # gradtx.lazy an element without an entry keeps Δ while base moves on (with Δ =
        # base = 1 it kept 1 and later stepped by 1, review R3).
        lr = rate()
        return state_class(
            jax.tree.map(lambda p: jnp.full_like(p, initial(p, lr).astype(p.dtype)), params),
            _tree.zeros_like(params),
            lr,
        )

    def torch_rule(g, prev, delta, ratio, plus, minus, lo, hi):
        # the signs' product: XLA on CPU flushes a subnormal g · prev to 0, so gradients
        # below ~1e-19 in float32 never grew their Δ; torch's product keeps them
        p = jnp.sign(g) * jnp.sign(prev)
        # two clipped products, not one product of a three-way select: that product,
        # read by the clip and by the parameter's update, was computed again in the
        # update's kernel and split same-shaped leaves' kernels (1.6x the compile)
        shrunk = jnp.clip(delta * minus, lo, hi)
        delta = jnp.where(p < 0, shrunk, jnp.clip(delta * jnp.where(p > 0, plus, ratio), lo, hi))
        g = jnp.where(p < 0, jnp.zeros_like(g), g)
        return jnp.sign(g) * delta, g, delta

    def optax_rule(g, prev, delta, ratio, plus, minus, lo, hi):
        # Δ·r and Δ·(r·eta) as two products, not one Δ·select read by the clip and the
        # select: with that one, XLA ordered the inputs of the first leaf of each shape
        # unlike the others', so each shape compiled one kernel more
        p = g * prev
        grown = jnp.clip(delta * jnp.where(p > 0, plus, minus), lo, hi)
        delta = jnp.where(p == 0, delta * ratio, grown)
        zero = jnp.zeros_like(g)
        return jnp.where(p < 0, zero, prev), jnp.where(p < 0, zero, delta * jnp.sign(g)), delta

    rule = torch_rule if convention == "torch" else optax_rule

    def update(updates, state, params=None, **extra):
        lr = rate()
        count = step_count(extra, current_call("gradtx.scale_by_rprop"))
        *factors, floor = _control.once(
            _factors, count, lr, state.base, eta_plus, eta_minus, min_step_size
        )
        # optax's rule reads the rate only at init: a state made with 0 keeps Δ = 0
        lo = floor if convention == "torch" else min_step_size

        def one(g, delta, prev):
            wide = _dtypes.compute_dtype(g.dtype, delta.dtype)
            real = _dtypes.real_dtype(wide)
            scalars = [x.astype(real) for x in factors]
            scalars += [jnp.asarray(h).astype(real) for h in (lo, max_step_size)]
            g, delta, prev = (x.astype(wide) for x in (g, delta, prev))
            return _by_part(lambda *xs: rule(*xs, *scalars), g, prev, delta)

        grads, treedef = jax.tree.flatten(gradient(updates, extra))
        steps = treedef.flatten_up_to(state.step_size)
        prevs = treedef.flatten_up_to(state[1])  # prev or prev_update
        results = [one(g, d, p) for g, d, p in zip(grads, steps, prevs)]

        def tree(i, like):
            return treedef.unflatten(
                r[i].astype(x.dtype) for r, x in zip(results, treedef.flatten_up_to(like))
            )

        new = state_class(tree(2, state.step_size), tree(1, state[1]), lr)
        return tree(0, updates), new

    return GradientTransformation(init, update)
