"""L-BFGS, as ``torch.optim.LBFGS``: several iterations and function evaluations per step."""

from __future__ import annotations

from typing import Any

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Int
from gradtx._specs import OptionalFlag
from gradtx.optimizers._aliases import same
from gradtx.optimizers._aliases import traced
from gradtx.optimizers._lbfgs_loop import check_keywords
from gradtx.optimizers._lbfgs_loop import torch_lbfgs
from gradtx.transforms.quasi_newton import scale_by_lbfgs
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.zoom import scale_by_zoom_linesearch

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
    The loop is a ``lax.while_loop``, which has no reverse-mode derivative:
    ``jax.grad`` through an update fails (``jax.jvp`` works); so does optax's
    rule with ``line_search_fn="strong_wolfe"`` (its zoom search loops), not
    without it.

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
    (optax's data keywords; others are an error, as in optax), but for
    ``grads`` and ``count``, which gradtx's ``update`` keeps for itself (optax
    passes them on; a ``value_fn`` that needs one is refused).  The gradient
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
            check_keywords(call, extra, data=True)
            if extra.get("grad") is None:  # the input is ∇f at the params, as for torch's rule
                extra["grad"] = updates
            return inner.update(updates, state, params, **extra)

        return GradientTransformation(inner.init, update_optax)
    return torch_lbfgs(
        call, learning_rate, max_iter, max_eval, tolerance_grad, tolerance_change,
        history_size, line_search_fn,
    )  # fmt: skip
