"""L-BFGS, as ``torch.optim.LBFGS``: several iterations and function evaluations per step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx import _tree
from gradtx._base import GradientTransformation, ScalarOrSchedule, chain, gradient
from gradtx._factory import current_call
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION, LEARNING_RATE, NON_NEGATIVE, Choice, Int, OptionalFlag
from gradtx.optimizers._aliases import same, traced
from gradtx.transforms.line_search import strong_wolfe
from gradtx.transforms.quasi_newton import scale_by_lbfgs
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.zoom import UPDATE_KEYWORDS, parameter_names, scale_by_zoom_linesearch

CURVATURE_EPS = 1e-10
"""A pair (s, y) enters the memory only when ``y · s`` exceeds this (torch's constant)."""


class LbfgsState(NamedTuple):
    """L-BFGS's memory between steps, over the flat params (torch's names in brackets).

    Attributes:
      d: the last search direction [``d``].
      t: the last step length [``t``].
      s: ``(history_size, n)`` ring buffer of steps ``s_k = t d`` [``old_stps``].
      y: ``(history_size, n)`` ring buffer of gradient changes ``y_k`` [``old_dirs``].
      rho: ``(history_size,)``: ``1 / (y_k · s_k)`` [``ro``].
      num_pairs: how many slots of the ring hold a pair (int32) [``len(old_dirs)``].
      head: the slot the next pair goes to; the newest pair is at ``head - 1``.
      gamma: the initial inverse Hessian ``γ I``, ``γ = y · s / y · y`` [``H_diag``].
      prev_grad: the gradient at the start of the last iteration [``prev_flat_grad``].
      prev_loss: the loss there [``prev_loss``].
      n_iter: iterations over all steps (int32) [``n_iter``].
      func_evals: evaluations over all steps, each step's given ``value`` included
        [``func_evals``].
      evals: evaluations in the last step, its given ``value`` included
        (torch's local ``current_evals``).
    """

    d: jax.Array
    t: jax.Array
    s: jax.Array
    y: jax.Array
    rho: jax.Array
    num_pairs: jax.Array
    head: jax.Array
    gamma: jax.Array
    prev_grad: jax.Array
    prev_loss: jax.Array
    n_iter: jax.Array
    func_evals: jax.Array
    evals: jax.Array


class _Carry(NamedTuple):
    """One step's loop state: the point, the memory, the counters."""

    x: jax.Array
    loss: jax.Array
    g: jax.Array
    mem: LbfgsState
    n_local: jax.Array
    done: jax.Array


def _two_loop(g: jax.Array, mem: LbfgsState) -> jax.Array:
    """``-H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), torch's order."""
    m = mem.rho.shape[0]

    def newest_first(i, carry):
        q, alpha = carry
        k = (mem.head - 1 - i + m) % m
        a = (mem.s[k] @ q) * mem.rho[k]
        return q + (-a) * mem.y[k], alpha.at[k].set(a)

    q, alpha = lax.fori_loop(0, mem.num_pairs, newest_first, (-g, jnp.zeros_like(mem.rho)))

    def oldest_first(i, r):
        k = (mem.head - mem.num_pairs + i + m) % m
        b = (mem.y[k] @ r) * mem.rho[k]
        return r + (alpha[k] - b) * mem.s[k]

    return lax.fori_loop(0, mem.num_pairs, oldest_first, q * mem.gamma)


def _remember(mem: LbfgsState, g: jax.Array, first: jax.Array) -> LbfgsState:
    """Add the last iteration's pair when ``y · s > 1e-10``; reset the memory on the first."""
    m = mem.rho.shape[0]
    y, s = g - mem.prev_grad, mem.d * mem.t
    ys = y @ s
    keep = jnp.logical_not(first) & (ys > CURVATURE_EPS)

    def put(buf, row):  # the oldest pair is overwritten once the ring is full
        return buf.at[mem.head].set(jnp.where(keep, row, buf[mem.head]))

    num_pairs = jnp.where(keep, jnp.minimum(mem.num_pairs + 1, m), mem.num_pairs)
    head = jnp.where(keep, (mem.head + 1) % m, mem.head)
    gamma = jnp.where(keep, ys / (y @ y), mem.gamma)
    return mem._replace(
        s=put(mem.s, s),
        y=put(mem.y, y),
        rho=put(mem.rho, 1.0 / ys),
        num_pairs=jnp.where(first, 0, num_pairs).astype(jnp.int32),
        head=jnp.where(first, 0, head).astype(jnp.int32),
        gamma=jnp.where(first, jnp.ones_like(gamma), gamma),
    )


def _add(count: jax.Array, n: Any) -> jax.Array:
    """``count + n`` for small ``n >= 0``, saturating at the int32 maximum."""
    return (jnp.minimum(count, _tree.INT32_MAX - n) + n).astype(jnp.int32)


def _flat(leaves: list, dtype: Any) -> jax.Array:
    """The leaves as one vector (``jax.tree.leaves`` order), in ``dtype``: torch's flat view."""
    parts = [jnp.ravel(_tree.replicated(jnp.asarray(x))).astype(dtype) for x in leaves]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)


def _unflat(x: jax.Array, like: tuple) -> list:
    """``x`` cut into leaves of the types ``like`` (shapes, dtypes, explicit shardings)."""
    out, start = [], 0
    for leaf in like:
        piece = x[start : start + leaf.size].reshape(leaf.shape).astype(leaf.dtype)
        out.append(_tree.sharded_like(piece, leaf))
        start += leaf.size
    return out


class _Numbers(NamedTuple):
    """The update's hyperparameters that are data, passed to the loop as operands."""

    lr: jax.Array
    tol_grad: jax.Array
    tol_change: jax.Array


def _not_done(operands: tuple) -> jax.Array:
    return jnp.logical_not(operands[0].done)


def _sup(v: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(v), initial=jnp.zeros([], v.dtype))


def _body(
    value_fn: Callable[[Any], Any],
    treedef: Any,
    avals: tuple,
    max_iter: int,
    max_eval: int,
    line_search_fn: str | None,
) -> Callable[[Any], Any]:
    """One iteration of torch's loop, over ``(carry, numbers)``.  Everything that may
    change between updates is an operand; what the closure holds is the configuration."""

    def evaluate(x, dtype):
        loss, grads = jax.value_and_grad(value_fn)(treedef.unflatten(_unflat(x, avals)))
        return jnp.asarray(loss).astype(dtype), _flat(jax.tree.leaves(grads), dtype)

    def iteration(operands):
        c, n = operands
        n_iter = _tree.safe_increment(c.mem.n_iter)
        first = n_iter == 1
        mem = _remember(c.mem, c.g, first)
        d = _two_loop(c.g, mem)
        ratio = 1.0 / jnp.sum(jnp.abs(c.g))
        t = jnp.where(first, jnp.where(ratio < 1.0, ratio, 1.0) * n.lr, n.lr)
        mem = mem._replace(d=d, t=t, prev_grad=c.g, prev_loss=c.loss, n_iter=n_iter)
        c = c._replace(mem=mem, n_local=c.n_local + 1)
        gtd = c.g @ d
        return lax.cond(gtd > -n.tol_change, stop, advance, c, gtd, n), n

    def stop(c, gtd, n):  # no descent direction: torch breaks before moving
        return c._replace(done=jnp.asarray(True))

    def advance(c, gtd, n):
        mem, dtype = c.mem, c.x.dtype
        if line_search_fn == "strong_wolfe":
            found = strong_wolfe(
                lambda t: evaluate(c.x + t * mem.d, dtype), mem.d, mem.t, c.loss, c.g, gtd,
                max_ls=max_eval - mem.evals,
            )  # fmt: skip  # its own tolerance_change (1e-9): torch passes not the optimizer's
            t, loss, g, spent = found.step, found.value, found.grad, found.evals
            x = c.x + t * mem.d
        else:
            t, x = mem.t, c.x + mem.t * mem.d
            last = c.n_local == max_iter  # torch does not re-evaluate after the last one
            loss, g, spent = lax.cond(
                last,
                lambda: (c.loss, c.g, jnp.zeros([], jnp.int32)),
                lambda: (*evaluate(x, dtype), jnp.ones([], jnp.int32)),
            )
        evals = mem.evals + spent
        mem = mem._replace(t=t, evals=evals, func_evals=_add(mem.func_evals, spent))
        done = (c.n_local == max_iter) | (evals >= max_eval) | (_sup(g) <= n.tol_grad)
        done |= (_sup(mem.d * t) <= n.tol_change) | (jnp.abs(loss - mem.prev_loss) < n.tol_change)
        return _Carry(x, loss, g, mem, c.n_local, done)

    return iteration


TORCH_LOOP = {"max_iter": 20, "tolerance_grad": 1e-7, "tolerance_change": 1e-9}
"""torch's per-step loop controls, with their defaults: optax's rule has no loop."""


def _check(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments of one convention given to the other are refused, not ignored."""
    out = dict(arguments)
    if out["convention"] == "torch":
        if out["scale_init_precond"] is not None:
            raise ValueError(
                f"{call}(scale_init_precond=...): optax's option, taken with "
                "convention='optax' only (torch's rule scales the first step by min(1, 1/|g|_1))"
            )
        return out
    for name, default in TORCH_LOOP.items():
        if not (out[name] is None or same(out[name], default) or traced(out[name])):
            raise ValueError(
                f"{call}({name}=...): torch's loop control; convention='optax' does one "
                "iteration per update, so it has no meaning there"
            )
        if name != "max_iter":
            out[name] = None  # unused: not stored
    if out["line_search_fn"] is None and out["max_eval"] is not None:
        raise ValueError(
            f"{call}(max_eval=...): under convention='optax' max_eval bounds the line "
            "search's evaluations, and line_search_fn=None has none"
        )
    return out


def _check_keywords(call: str, extra: dict[str, Any], *, data: bool) -> None:
    """A keyword meant as data that would not reach ``value_fn`` is an error, not dropped."""
    value_fn = extra.get("value_fn")
    names = parameter_names(value_fn) if data and value_fn is not None else set()
    unknown = sorted(k for k in extra if k not in UPDATE_KEYWORDS | names)
    if unknown:
        why = (
            "value_fn has no parameters of those names" if data
            else "torch's rule calls value_fn(params) alone: close over data (functools.partial)"
        )  # fmt: skip
        raise TypeError(f"{call}.update: unexpected keywords {unknown}; {why}")


@optimizer(
    references="`torch.optim.LBFGS` (both `line_search_fn`s, several steps); `optax.lbfgs` "
    '(`convention="optax"`: memory, scaling, zoom line search or none)',
    takes=("value", "value_fn"),
    derive=_check,
    learning_rate=LEARNING_RATE,
    max_iter=Int(1),
    max_eval=Int(1, optional=True),
    tolerance_grad=NON_NEGATIVE,
    tolerance_change=NON_NEGATIVE,
    history_size=Int(1),
    line_search_fn=Choice("strong_wolfe", optional=True),
    convention=CONVENTION,
    scale_init_precond=OptionalFlag(),
)
def lbfgs(
    learning_rate: ScalarOrSchedule = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
    *,
    convention: str = "torch",
    scale_init_precond: bool | None = None,
) -> GradientTransformation:
    """L-BFGS (Liu & Nocedal), as ``torch.optim.LBFGS``: one update is one ``step(closure)``.

    An update takes the loss and gradient at the params (torch's first call of
    the closure) and a function of the params giving the loss, which it
    evaluates (with ``jax.value_and_grad``) inside the compiled step, as
    torch calls the closure::

      updates, state = opt.update(grads, state, params, value=loss, value_fn=loss_fn)

    One update, on the params flattened into one vector θ (``jax.tree.leaves``
    order), with ``g = ∇f(θ)``::

      stop if max|g| <= tolerance_grad
      up to max_iter iterations:
        first iteration ever: d = -g; memory emptied; γ = 1
        else: s = t d, y = g - g_prev            (t, d, g_prev: the last iteration's)
              if y·s > 1e-10: store (s, y, 1/y·s), dropping the oldest past
                              history_size pairs; γ = y·s / y·y
              d = -H g       (two-loop recursion, H_0 = γ I)
        t = min(1, 1/|g|_1) η on the first iteration ever, else η
        stop if g·d > -tolerance_change
        line_search_fn=None:           θ += t d; f, g at θ (skipped on the last iteration)
        line_search_fn="strong_wolfe": t, f, g = strong_wolfe(f, g, d, t); θ += t d
        stop after max_iter iterations or >= max_eval evaluations, or if
             max|g| <= tolerance_grad, max|t d| <= tolerance_change, |f - f_prev| < tolerance_change

    The memory, the direction, ``t`` and the counters carry over to the next
    update, as torch's ``state`` does.  The line search is
    ``gradtx.transforms.line_search.strong_wolfe`` (``c1 = 1e-4``,
    ``c2 = 0.9``, its own ``tolerance_change = 1e-9`` whatever the
    optimizer's, at most ``max_eval`` minus the evaluations so far past its
    first), as torch calls its ``_strong_wolfe``.  ``evals`` in the state counts this update's evaluations,
    the given ``value`` included (``optax.tree_utils.tree_get(state,
    "evals")``); ``func_evals`` and ``n_iter`` count over all updates.

    Chain: none: one transform.  The learning rate is the trial step
    length of every iteration (the line search starts from it), not a
    factor on the output, so it is not a trailing ``scale_by_learning_rate``.
    With ``convention="optax"``: ``scale_by_lbfgs → scale_by_learning_rate
    → scale_by_zoom_linesearch``.

    Differences: torch's closure is ``value``/``grads`` (its first call) and
    ``value_fn`` (the later ones); to supply a gradient of your own, give
    ``value_fn`` a ``jax.custom_vjp``; close over data rather than passing it
    as extra keywords.  The history is a ring buffer of ``history_size``
    pairs allocated at ``init`` (``2 history_size n`` floats, torch's lists
    grow to that).  The flat vector and the memory are in the params' widest
    dtype, at least float32, and do not keep the params' shardings.  Complex
    params are refused (torch's documentation requires real ones).  A
    ``learning_rate`` schedule is evaluated once per update.  As in torch, a
    line search may take one evaluation past ``max_eval``.  Keywords of
    ``update`` other than ``value``, ``value_fn`` and ``grad`` are refused.

    ``convention="optax"`` is ``optax.lbfgs``'s rule: one iteration per
    update, no loop, and the line search is optax's zoom::

      d = H g         scale_by_lbfgs(memory_size=history_size, scale_init_precond)
      u = -η d        scale_by_learning_rate(learning_rate)
      u = t u         scale_by_zoom_linesearch(max_eval or 20, initial_guess_strategy="one"),
                      only with line_search_fn="strong_wolfe" (its conditions are strong
                      Wolfe ones, c1 = 1e-4, c2 = 0.9; t = 1 without it)

    So ``optax.lbfgs()`` is ``lbfgs(history_size=10,
    line_search_fn="strong_wolfe", convention="optax")`` and
    ``optax.lbfgs(linesearch=None)`` drops ``line_search_fn``; optax's
    ``learning_rate=None`` is η = 1.  Its first step is scaled by
    ``min(1, 1/‖g‖_2)`` (γ_0), later ones by ``γ = y·s / y·y``
    (``scale_init_precond=False``: 1).  Under this convention ``max_iter``,
    ``tolerance_grad`` and ``tolerance_change`` must keep their defaults
    (they control torch's loop), complex params are taken as optax takes
    them, and keywords of ``update`` that ``value_fn`` names are passed to it
    (optax's data keywords; others are an error, as in optax).  The gradient
    given as the update's input is taken as ∇f at the params, so ``grad=`` is
    not needed; pass it when the input is something else (say, clipped
    gradients from an enclosing chain), as optax's search reads ``grad``.
    ``max_eval`` needs ``line_search_fn="strong_wolfe"`` here.  For optax's
    other line searches or options, chain the primitives yourself.

    Args:
      learning_rate: η, the step length tried each iteration (torch's ``lr``);
        a number or schedule (one value per update).
      max_iter: most iterations per update (static).
      max_eval: most evaluations per update (static); default
        ``max_iter * 5 // 4``, as torch.
      tolerance_grad: stop when ``max|g| <= tolerance_grad``.
      tolerance_change: stop when the directional derivative, the step or the
        loss change falls below it.
      history_size: how many (s, y) pairs the memory keeps (static).
      line_search_fn: ``None`` (fixed steps of η) or ``"strong_wolfe"``.
      convention: ``"torch"`` or ``"optax"`` (the rules above).
      scale_init_precond: optax's option (``convention="optax"`` only; ``None``
        is its default, ``True``).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp, optax
      >>> def loss(p):
      ...     return (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2
      >>> opt = gradtx.lbfgs(line_search_fn="strong_wolfe")
      >>> @jax.jit
      ... def step(params, state):
      ...     value, grads = jax.value_and_grad(loss)(params)
      ...     updates, state = opt.update(grads, state, params, value=value, value_fn=loss)
      ...     return gradtx.apply_updates(params, updates), state
      >>> params = {"x": jnp.asarray(-1.5), "y": jnp.asarray(2.0)}
      >>> state = opt.init(params)
      >>> params, state = step(params, state)
      >>> int(optax.tree_utils.tree_get(state, "evals"))  # all of max_eval = 20 * 5 // 4
      25
      >>> for _ in range(2):
      ...     params, state = step(params, state)
      >>> print(f"{params['x']:.4f} {params['y']:.4f}")
      1.0000 1.0000

    References:
      Liu & Nocedal, "On the limited memory BFGS method for large scale
      optimization", Math. Programming 45, 1989.  Nocedal & Wright,
      "Numerical Optimization", 2nd ed., §7.2 (Algorithm 7.4, the two-loop
      recursion; eq. 7.20, γ) and §3.5 (the line search).
    """
    call = current_call("gradtx.lbfgs")
    _check(call, {"convention": convention, "scale_init_precond": scale_init_precond,
                  "max_iter": max_iter, "tolerance_grad": tolerance_grad,
                  "tolerance_change": tolerance_change, "max_eval": max_eval,
                  "line_search_fn": line_search_fn})  # fmt: skip  # nested calls skip derive
    if convention == "optax":
        stages = [
            scale_by_lbfgs(history_size, scale_init_precond is not False),
            scale_by_learning_rate(learning_rate),
        ]
        if line_search_fn == "strong_wolfe":
            length = 20 if max_eval is None else max_eval
            stages.append(scale_by_zoom_linesearch(length, initial_guess_strategy="one"))
        inner = chain(*stages)

        def update_optax(updates, state, params=None, **extra):
            _check_keywords(call, extra, data=True)
            if extra.get("grad") is None:  # the input is ∇f at the params, as for torch's rule
                extra["grad"] = updates
            return inner.update(updates, state, params, **extra)

        return GradientTransformation(inner.init, update_optax)
    if max_eval is None:
        max_eval = max_iter * 5 // 4

    def init(params):
        leaves = [jnp.asarray(x) for x in jax.tree.leaves(params)]
        for x in leaves:
            if jnp.iscomplexobj(x):
                raise TypeError(f"{call}: complex params are not supported (torch's are real)")
        dtype = _tree.compute_dtype(*(x.dtype for x in leaves))
        n = sum(math.prod(x.shape) for x in leaves)
        vector, scalar = jnp.zeros(n, dtype), jnp.zeros([], dtype)
        history, count = jnp.zeros((history_size, n), dtype), jnp.zeros([], jnp.int32)
        return LbfgsState(
            d=vector, t=scalar, s=history, y=history, rho=jnp.zeros(history_size, dtype),
            num_pairs=count, head=count, gamma=jnp.ones([], dtype), prev_grad=vector,
            prev_loss=scalar, n_iter=count, func_evals=count, evals=count,
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        _check_keywords(call, extra, data=False)
        value_fn, value = extra.get("value_fn"), extra.get("value")
        if params is None or value is None or value_fn is None:
            raise ValueError(
                f"{call}: update needs params, value= (the loss at params) and value_fn= "
                "(params -> loss), as torch's step needs its closure"
            )
        leaves, treedef = jax.tree.flatten(params)
        leaves = [jnp.asarray(x) for x in leaves]
        grad_leaves = jax.tree.leaves(gradient(updates, extra))
        dtype = state.d.dtype
        given = (learning_rate, tolerance_grad, tolerance_change)
        numbers = _Numbers(*(jnp.asarray(v).astype(dtype) for v in given))
        g0 = _flat(grad_leaves, dtype)
        mem = state._replace(evals=jnp.ones([], jnp.int32), func_evals=_add(state.func_evals, 1))
        start = _Carry(
            _flat(leaves, dtype), jnp.asarray(value).astype(dtype), g0, mem,
            jnp.zeros([], jnp.int32), _sup(g0) <= numbers.tol_grad,
        )  # fmt: skip
        avals = tuple(jax.typeof(x) for x in leaves)
        config = (value_fn, treedef, avals, max_iter, max_eval, line_search_fn)
        body = _tree.loop_body(_body, config, (start, numbers))
        end, _ = lax.while_loop(_not_done, body, (start, numbers))
        out = [
            (new - old).astype(g.dtype)
            for new, old, g in zip(_unflat(end.x, avals), leaves, grad_leaves)
        ]
        return treedef.unflatten(out), end.mem

    return GradientTransformation(init, update)
