"""optax's zoom line search: a step length meeting the strong Wolfe conditions, as a transform."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx.transforms.scaling import scaled

UPDATE_KEYWORDS = frozenset({"value", "value_fn", "grad", "grads", "count"})
"""Keywords of ``update`` that are not data for ``value_fn`` (``grads``, ``count``: gradtx's)."""


class ScaleByZoomLinesearchState(NamedTuple):
    """The last search's outcome.

    Attributes:
      stepsize: the step length η it took (the next search's guess with
        ``initial_guess_strategy="keep"``); optax's ``learning_rate``.
      value: the loss at the accepted point ``w + η u``.
      grad: the gradient there (``optax.value_and_grad_from_state`` reads both).
      num_linesearch_steps: evaluations of ``value_fn`` the search made (int32).
      decrease_error: how far the accepted point misses sufficient decrease (0: met).
      curvature_error: how far it misses the curvature condition (0: met).
    """

    stepsize: jax.Array
    value: jax.Array
    grad: Updates
    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class _Search(NamedTuple):
    """The loop's carry: the last trial, the bracket, the best safe point, the flags."""

    evals: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    bracketed: jax.Array  # the zoom phase: [low, high] holds a point meeting both conditions
    done: jax.Array
    failed: jax.Array
    low: jax.Array  # the bracket's end with the lower value (not the smaller step)
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    ref: jax.Array  # a third point for the cubic fit
    value_ref: jax.Array
    safe: jax.Array  # the best step meeting sufficient decrease (0: none yet)
    value_safe: jax.Array
    grad_safe: Any


def cubic_minimizer(a, fa, sa, b, fb, c, fc):
    """The critical point of the cubic through ``(a, fa)``, ``(b, fb)``, ``(c, fc)``
    with slope ``sa`` at ``a``; NaN where it has none (the caller then falls back)."""
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    # The cubic's two top coefficients solve a 2x2 system; as one matrix product (not
    # two sums written out) it rounds as optax's does, and the search is sensitive to that.
    system = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    rhs = jnp.array([fb - fa - sa * db, fc - fa - sa * dc])
    cube, square = jnp.dot(system, rhs, precision=lax.Precision.HIGHEST) / denom
    return a + (-square + jnp.sqrt(square * square - 3.0 * cube * sa)) / (3.0 * cube)


def quadratic_minimizer(a, fa, sa, b, fb):
    """The critical point of the parabola through ``(a, fa)`` and ``(b, fb)`` with slope
    ``sa`` at ``a``."""
    db = b - a
    curvature = (fb - fa - sa * db) / db**2
    return a - sa / (2.0 * curvature)


def parameter_names(value_fn: Callable) -> set[str]:
    """The names ``value_fn`` takes (none if its signature cannot be read)."""
    try:
        return set(inspect.signature(value_fn).parameters)
    except (TypeError, ValueError):
        return set()


def data_keywords(call: str, value_fn: Callable, extra: dict[str, Any]) -> dict[str, Any]:
    """The keywords of ``update`` that ``value_fn`` names: its data (optax forwards those).
    One that ``value_fn`` needs under a name ``update`` keeps for itself is refused."""
    try:
        given = list(inspect.signature(value_fn).parameters.values())
    except (TypeError, ValueError):
        given = []
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    taken = sorted(
        p.name
        for p in given[1:]  # after the params
        if p.kind in plain and p.default is inspect.Parameter.empty and p.name in UPDATE_KEYWORDS
    )
    if taken:
        raise TypeError(
            f"{call}: value_fn needs the data keyword {taken[0]!r}, a name update keeps for "
            f"itself ({', '.join(sorted(UPDATE_KEYWORDS))}), so it cannot reach value_fn: "
            "give the data another name"
        )
    names = {p.name for p in given} - UPDATE_KEYWORDS
    return {k: v for k, v in extra.items() if k in names}


@factory(
    max_linesearch_steps=Int(1), max_learning_rate=Hyper(low=0.0, low_open=True, nullable=True),
    tol=NON_NEGATIVE, increase_factor=Hyper(low=1.0), slope_rtol=Hyper(low=0.0, high=1.0),
    curv_rtol=Hyper(low=0.0, finite=False), approx_dec_rtol=Hyper(low=0.0, nullable=True),
    stepsize_precision=NON_NEGATIVE, initial_guess_strategy=Choice("one", "keep"),
)  # fmt: skip
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
) -> GradientTransformation:
    """Scale the updates by a step length found by a zoom line search, as ``optax``'s.

    ``update(updates, state, params, value=f(w), value_fn=f, **data)``
    searches along the direction ``u`` (the updates) from the params ``w``
    for a step η meeting (``φ(η) = f(w + η u)``, ``φ'(η) = Re⟨∇f(w + η u), u⟩``)::

      decrease:  φ(η) <= φ(0) + c1 η φ'(0) + tol,  or, with approx_dec_rtol = c3,
                 Hager & Zhang's approximate form: φ'(η) <= (2 c1 - 1) φ'(0) and
                 φ(η) <= φ(0) + c3 |φ(0)|   (either suffices)
      curvature: |φ'(η)| <= c2 |φ'(0)| + tol
      out = η u

    Expanding phase (Nocedal & Wright, Algorithm 3.5): try η = η_0 (1, or
    the last search's η with ``initial_guess_strategy="keep"``), then
    ``increase_factor`` times the last trial (capped at
    ``max_learning_rate``), until a trial meets both conditions or brackets
    such a point: it misses the decrease or does not lower the loss below
    the last trial (``[last, trial]``), or its slope is ≥ 0 (``[trial,
    last]``).  Zoom phase (Algorithm 3.6): try the minimiser of the cubic
    through both ends and the last discarded end, unless it lies within 20%
    of the bracket's length from an end; else the parabola's, unless
    within 10%; else the middle; then shrink the bracket around the trial.
    The search stops at a point meeting both conditions, after
    ``max_linesearch_steps`` evaluations, or once the bracket is shorter
    than ``stepsize_precision`` with a safe point in hand.  Stopping without
    both conditions it takes the safe point: the last trial that met the
    decrease condition while expanding, replaced while zooming by any lower
    one that meets it; without one, the last trial, or η = 0 if that trial's
    decrease error was infinite (its loss or slope not finite).  Each trial
    evaluates ``jax.value_and_grad(value_fn)`` inside the compiled step (a
    ``lax.while_loop``).

    The gradient at ``w`` is the keyword ``grad`` (for complex params, the
    conjugate of ``jax.grad``'s, as every gradtx update takes it); without it
    the search evaluates ``jax.grad(value_fn)`` at ``w`` once more and
    conjugates it (optax requires ``grad=``).  It is never the chain's ``grads``: after a gradient map
    (``clip``, ``scale``) that is the map's output, not ∇f.  Other keywords
    that ``value_fn`` names are passed to it (data), as optax does; the rest
    are left to the chain's other members.  The state keeps the accepted
    point's ``value`` and ``grad``, so ``optax.value_and_grad_from_state``
    can reuse them; that ``grad`` is JAX's, as ``jax.value_and_grad`` gives
    it (as in optax), so for complex params conjugate it before passing it
    back as the updates or ``grad=``.

    Differences from ``optax.scale_by_zoom_linesearch``: its ``verbose``
    printing is left out; the state names optax's ``learning_rate`` ``stepsize``
    (so ``get_hyperparams`` and ``tree_get`` see no second learning rate) and
    holds its ``info`` fields directly.  Scalars are computed in the params'
    widest real dtype, at least float32, and a trial point in at least float32
    per leaf: ``value_fn`` gets it in that dtype, as optax's promotion gives it
    (rounded to 16-bit params, small steps fell on the params and the search
    never moved).  Bad arguments are refused at construction (optax takes
    ``max_linesearch_steps=0`` and still evaluates once).

    Args:
      max_linesearch_steps: most evaluations per search (static).
      max_learning_rate: a cap on η (``None``: none).
      tol: slack on both conditions.
      increase_factor: growth of η in the expanding phase (≥ 1).
      slope_rtol: c1, the sufficient-decrease fraction.
      curv_rtol: c2, the curvature fraction (``inf`` keeps only the decrease
        condition: a backtracking search).
      approx_dec_rtol: c3 (``None``: only Armijo's decrease condition).
      stepsize_precision: the bracket length below which a safe point is taken.
      initial_guess_strategy: ``"one"`` or ``"keep"`` (the last search's η).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum((w - 1.0) ** 2)
      >>> tx = gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_zoom_linesearch(10))
      >>> w = jnp.array([3.0, -1.0])
      >>> value, g = jax.value_and_grad(f)(w)
      >>> updates, state = tx.update(g, tx.init(w), w, value=value, value_fn=f)
      >>> gradtx.apply_updates(w, updates)  # η = 1/2 lands on the minimum
      Array([1., 1.], dtype=float32)

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., Algorithms 3.5 and
      3.6.  Hager & Zhang, "Algorithm 851: CG_DESCENT", ACM TOMS 32, 2006
      (eq. 23, the approximate Wolfe condition).
    """

    def init(params):
        leaves = [jnp.asarray(p) for p in jax.tree.leaves(params)]
        dtype = _dtypes.real_dtype(_dtypes.compute_dtype(*(x.dtype for x in leaves)))
        return ScaleByZoomLinesearchState(
            stepsize=jnp.ones([], dtype), value=jnp.full([], jnp.inf, dtype),
            grad=jax.tree.map(jnp.zeros_like, params), num_linesearch_steps=jnp.zeros([], jnp.int32),
            decrease_error=jnp.full([], jnp.inf, dtype), curvature_error=jnp.full([], jnp.inf, dtype),
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_zoom_linesearch")
        value, value_fn = extra.get("value"), _tree.users_code(extra.get("value_fn"))
        if params is None or value is None or value_fn is None:
            raise _update_checks.missing_keyword(
                f"{call}: update needs params, value= (the loss at params) and value_fn= "
                "(params -> loss): the search evaluates the loss along the updates"
            )
        data = data_keywords(call, value_fn, extra)
        value = _update_checks.scalar_loss(f"{call}.update", value)
        _update_checks.loss_function(f"{call}.update", "value_fn", value_fn, params, **data)
        grad = extra.get("grad")
        if grad is None:  # in the updates' convention: the conjugate of JAX's gradient
            grad = jax.tree.map(jnp.conj, jax.grad(value_fn)(params, **data))
        dtype = state.stepsize.dtype

        def number(v):
            return None if v is None else jnp.asarray(v).astype(dtype)

        c1, c2, slack = number(slope_rtol), number(curv_rtol), number(tol)
        grow, precision = number(increase_factor), number(stepsize_precision)
        c3, cap = number(approx_dec_rtol), number(max_learning_rate)

        f0 = jnp.asarray(value).astype(dtype)
        grad0 = _like(grad, params)
        s0 = _tree.real_vdot(updates, grad0, dtype)
        guess = jnp.ones([], dtype) if initial_guess_strategy == "one" else state.stepsize
        zero, inf = jnp.zeros([], dtype), jnp.full([], jnp.inf, dtype)
        start = _Search(
            jnp.zeros([], jnp.int32), zero, f0, grad0, s0, inf, inf,
            jnp.asarray(False), jnp.asarray(False), jnp.asarray(False),
            zero, f0, s0, zero, f0, s0, zero, f0, zero, f0, grad0,
        )  # fmt: skip
        arrays, fixed = _control.split_data(data)  # a flag, a string: given as is
        context = _Context(
            params, updates, arrays, f0, s0, guess, c1, c2, c3, slack, grow, cap, precision
        )
        config = (value_fn, fixed, max_linesearch_steps)
        probes = ((lambda p, a: value_fn(p, **a, **dict(fixed)), (params, arrays)),)
        step = _control.loop_body(_search_step, config, (start, context), probes)
        end, _ = lax.while_loop(_searching, step, (start, context))

        new_state = ScaleByZoomLinesearchState(
            end.stepsize, end.value, end.grad, end.evals, end.decrease_error, end.curvature_error
        )
        return scaled(updates, end.stepsize), new_state

    return GradientTransformation(init, update)


class _Context(NamedTuple):
    """What a search reads and does not change: the loop's second operand.  ``c3`` and
    ``cap`` may be None (left out of the program)."""

    params: Any
    updates: Any
    data: dict[str, Any]
    f0: jax.Array
    s0: jax.Array
    guess: jax.Array
    c1: jax.Array
    c2: jax.Array
    c3: jax.Array | None
    slack: jax.Array
    grow: jax.Array
    cap: jax.Array | None
    precision: jax.Array


def _searching(operands: tuple) -> jax.Array:
    c = operands[0]
    return ~(c.done | c.failed)


def _like(tree: Any, params: Any) -> Any:
    return jax.tree.map(lambda x, p: jnp.asarray(x).astype(p.dtype), tree, params)


def _errors(x: _Context, stepsize: jax.Array, f: jax.Array, s: jax.Array) -> tuple:
    """The decrease and curvature conditions' violations at a trial (0: met)."""
    decrease = f - x.f0 - x.c1 * stepsize * x.s0
    if x.c3 is not None:
        approximate = jnp.maximum(s - (2 * x.c1 - 1.0) * x.s0, f - x.f0 - x.c3 * jnp.abs(x.f0))
        decrease = jnp.minimum(approximate, decrease)
    curvature = jnp.abs(s) - x.c2 * jnp.abs(x.s0)
    # Only a violation counts; a NaN (outside the domain) is an infinite one.
    decrease, curvature = (jnp.maximum(e, 0.0) for e in (decrease, curvature))
    return tuple(jnp.where(jnp.isnan(e), jnp.inf, e) for e in (decrease, curvature))


def _zoom_trial(c: _Search) -> jax.Array:
    left, right = jnp.minimum(c.low, c.high), jnp.maximum(c.low, c.high)
    length = right - left
    cubic = cubic_minimizer(c.low, c.value_low, c.slope_low, c.high, c.value_high,
                            c.ref, c.value_ref)  # fmt: skip
    quad = quadratic_minimizer(c.low, c.value_low, c.slope_low, c.high, c.value_high)
    use_cubic = (cubic > left + 0.2 * length) & (cubic < right - 0.2 * length)
    use_quad = (quad > left + 0.1 * length) & (quad < right - 0.1 * length)
    middle = (c.low + c.high) / 2.0
    return jnp.where(use_cubic, cubic, jnp.where(use_quad, quad, middle))


def _search_step(
    value_fn: Callable, fixed: tuple, max_linesearch_steps: int
) -> Callable[[tuple], tuple]:
    """One trial of the search, over ``(carry, context)``: ``_control.loop_body``'s rule,
    every number an operand; the closure holds ``value_fn``, its data that are not
    arrays (``fixed``: name-value pairs) and the static bound."""

    def at(x: _Context, stepsize: jax.Array) -> tuple:
        dtype = x.f0.dtype

        def point(p, u):
            # Left in the wider dtype, as optax's promotion leaves it: a 16-bit trial
            # rounded back to the params' dtype falls on the params themselves for
            # small steps, and the search saw a flat loss and never moved.
            wide = _dtypes.compute_dtype(p.dtype)
            return p.astype(wide) + stepsize.astype(wide) * u.astype(wide)

        trial = jax.tree.map(point, x.params, x.updates)
        loss, g = jax.value_and_grad(value_fn)(trial, **x.data, **dict(fixed))
        slope = _tree.real_vdot(jax.tree.map(jnp.conj, g), x.updates, dtype)
        return jnp.asarray(loss).astype(dtype), _like(g, x.params), slope

    def step(operands: tuple) -> tuple:
        c, x = operands
        first = c.evals == 0
        expand = jnp.where(first, x.guess, x.grow * c.stepsize)
        capped = jnp.asarray(False) if x.cap is None else expand >= x.cap
        expand = expand if x.cap is None else jnp.minimum(expand, x.cap)
        trial = jnp.where(c.bracketed, _zoom_trial(c), expand)
        f, g, s = at(x, trial)
        decrease, curvature = _errors(x, trial, f, s)
        met = jnp.maximum(decrease, curvature) <= x.slack
        sufficient = decrease <= x.slack
        new = (trial, f, s)
        low = (c.low, c.value_low, c.slope_low)
        high = (c.high, c.value_high, c.slope_high)

        # Expanding: [last, trial] brackets if the trial is too high; [trial, last]
        # if it is low enough and climbs.
        last = (c.stepsize, c.value, c.slope)
        too_high = (decrease > 0) | ((f >= c.value) & ~first)
        climbs = (s >= 0) & ~too_high
        e_low, e_high = _pick(climbs, new, last), _pick(climbs, last, new)
        e_done = met | (capped & ~(too_high | climbs | met))
        e_safe = sufficient

        # Zooming: the trial replaces the end that keeps a lower value at `low`.
        up = (decrease > 0) | (f >= c.value_low)
        flip = (s * (c.high - c.low) >= 0) & ~up
        z_high = _pick(up, new, _pick(flip, low, high))
        z_low = _pick(up, low, new)
        z_ref = _pick(up | flip, high[:2], low[:2])
        z_safe = sufficient & (f < c.value_safe)

        zoom = c.bracketed
        take_safe = jnp.where(zoom, z_safe, e_safe)
        safe = _pick(take_safe, (trial, f, g), (c.safe, c.value_safe, c.grad_safe))
        new_low = _pick(zoom, z_low, e_low)
        new_high = _pick(zoom, z_high, e_high)
        new_ref = _pick(zoom, z_ref, e_low[:2])
        done = jnp.where(zoom, met, e_done)
        short = zoom & (jnp.abs(c.high - c.low) <= x.precision)
        failed = ((c.evals + 1 >= max_linesearch_steps) | (short & (safe[0] > 0))) & ~done
        # On failure: the best safe point, or no step at all if this trial left the domain.
        fallback = failed & ((safe[0] > 0) | jnp.isinf(decrease))
        stepsize, f, g = _pick(fallback, safe, (trial, f, g))
        return _Search(
            _numerics.safe_increment(c.evals), stepsize, f, g, s, decrease, curvature,
            c.bracketed | too_high | climbs | met, done, failed,
            *new_low, *new_high, *new_ref, *safe,
        ), x  # fmt: skip

    return step


def _pick(condition: jax.Array, yes: tuple, no: tuple) -> tuple:
    """``yes`` where ``condition`` holds, else ``no``, member by member (pytrees too)."""
    return tuple(
        jax.tree.map(lambda a, b: jnp.where(condition, a, b), y, n) for y, n in zip(yes, no)
    )
