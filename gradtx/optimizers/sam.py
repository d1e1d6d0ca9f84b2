"""SAM: sharpness-aware minimisation around any pair of optimizers."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _dtypes
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import apply_updates
from gradtx._build import current_call
from gradtx._hyperparams import keep_hyperparams
from gradtx._registry import optimizer
from gradtx._specs import Anything
from gradtx._specs import Flag
from gradtx._specs import Int
from gradtx._specs import Transform


class SamState(NamedTuple):
    """``steps_since_sync``: calls since the last outer step (0..k-1);
    ``opt_state``, ``adv_state``: the outer and adversarial optimizers' states;
    ``cache``: the outer params θ between outer steps (``None`` in opaque mode)."""

    steps_since_sync: jax.Array
    opt_state: OptState
    adv_state: OptState
    cache: Any


def _pick(cond: jax.Array, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), if_true, if_false)


def _negated(tree: Any) -> Any:
    return jax.tree.map(jnp.negative, tree)


def _withheld(call: str, tx: Any, updates: Any, state: Any, params: Any) -> Any:
    """``tx.update`` with the gradient alone, as optax's sam calls its optimizers: one
    that needs a keyword (``value``) says that sam withholds it."""
    with _update_checks.withheld.set_to(call):
        return tx.update(updates, state, params)


def _transparent(optimizer, adversary, sync_period, reset_state, call):
    def init(params):
        return SamState(
            jnp.zeros([], jnp.int32),
            optimizer.init(params),
            adversary.init(params),
            jax.tree.map(jnp.array, params),  # θ_0, in the params' dtype and sharding
        )

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(f"{call}: update needs params (the adversarial point, to undo it)")
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        ascent, adv_state = _withheld(call, adversary, updates, state.adv_state, params)
        ascent = _negated(ascent)
        # θ of this cycle: the params held at its first step (with k = 1, this step's).
        cache = _pick(first, params, state.cache)
        step, opt_state = _withheld(call, optimizer, updates, state.opt_state, cache)

        def back_to_cache(c, p, u):
            # θ + u - p: undo the adversarial moves and take the outer step from θ.
            wide = _dtypes.compute_dtype(c.dtype, p.dtype, u.dtype)
            return ((c.astype(wide) - p.astype(wide)) + u.astype(wide)).astype(u.dtype)

        outer = jax.tree.map(back_to_cache, cache, params, step)
        if reset_state:
            fresh = keep_hyperparams(adversary.init(params), adv_state)
            adv_state = _pick(last, fresh, adv_state)
        else:
            adv_state = _pick(last, state.adv_state, adv_state)
        new = SamState(
            ((state.steps_since_sync + 1) % sync_period).astype(jnp.int32),
            _pick(last, opt_state, state.opt_state),
            adv_state,
            cache,
        )
        return _pick(last, outer, ascent), new

    return GradientTransformation(init, update)


def _opaque(optimizer, adversary, sync_period, reset_state, batch_axis_name, call):
    def init(params):
        return SamState(
            jnp.zeros([], jnp.int32), optimizer.init(params), adversary.init(params), None
        )

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(
            call,
            "opaque_mode=True",
            "needs the params tree (grad_fn takes the params)",
            "flatten its optimizers instead: gradtx.sam(gradtx.flatten(<optimizer>), "
            "gradtx.flatten(<adv_optimizer>), opaque_mode=True)",
        )
        grad_fn = _update_checks.passed_function(
            f"{call}(opaque_mode=True)", params, extra, "grad_fn",
            "the gradient as a function of them: update(grads, state, params, "
            "grad_fn=lambda p, i: ...)",
        )  # fmt: skip
        if not callable(grad_fn):
            raise TypeError(
                f"{call}(opaque_mode=True).update: grad_fn must be a function (params, i) -> "
                f"gradient, got {type(grad_fn).__name__}"
            )
        adv_params, grads, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            ascent, adv_state = _withheld(call, adversary, grads, adv_state, adv_params)
            adv_params = apply_updates(adv_params, _negated(ascent))
            grads = _update_checks.gradient_like(
                f"{call}(opaque_mode=True).update", "grad_fn", grad_fn(adv_params, i), adv_params
            )
            if batch_axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name=batch_axis_name)
        if reset_state:
            adv_state = keep_hyperparams(adversary.init(params), adv_state)
        out, opt_state = _withheld(call, optimizer, grads, state.opt_state, params)
        return out, SamState(jnp.zeros([], jnp.int32), opt_state, adv_state, None)

    return GradientTransformation(init, update)


@optimizer(
    references="`optax.contrib.sam` (transparent and opaque modes, `reset_state`)",
    counted=False, optimizer=Transform(), adv_optimizer=Transform(), sync_period=Int(1),
    reset_state=Flag(), opaque_mode=Flag(), batch_axis_name=Anything(),
)  # fmt: skip
def sam(
    optimizer: optax.GradientTransformation,
    adv_optimizer: optax.GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | tuple[str, ...] | None = None,
) -> GradientTransformation:
    """SAM (Foret et al.) around any outer and adversarial optimizer, as ``optax.contrib.sam``.

    Every ``sync_period`` = k steps make one cycle, from the outer params θ
    (``adv`` = ``adv_optimizer``, ``opt`` = ``optimizer``, ``g(x)`` the
    gradient at x; for k ≥ 2)::

      θ̃_0 = θ
      θ̃_i = θ̃_{i-1} - adv(g(θ̃_{i-1}))          i = 1, ..., k - 1   (adversarial steps)
      θ   ← θ + opt(g(θ̃_{k-1}))                                   (the outer step, at θ)

    With ``adv = chain(normalize(), scale(-ρ))``, ``θ̃_1 = θ + ρ g(θ) / ‖g(θ)‖``:
    SAM's ascent step.

    Transparent mode (default): each call is one of those steps.  The
    params you hold are ``θ̃`` during the adversarial steps and ``θ`` after
    the last step of each cycle; take the gradient at the params you hold.
    Opaque mode: each call is a whole cycle, ``update(grads, state, params,
    grad_fn=lambda p, i: ...)`` with ``grad_fn(θ̃_{i+1}, i)`` the gradient
    at θ̃_{i+1} (``i = 0, ..., k - 2``, a Python int, as optax counts; the
    given ``grads`` are at ``θ``); the params only ever hold ``θ``, so state outside the
    optimizer (batch-norm statistics) sees no adversarial point.

    The adversarial optimizer's state is reset after each cycle
    (``reset_state``), keeping its hyperparameters as ``set_hyperparams`` left
    them (its statistics and step count start again).  The inner optimizers keep their own hyperparameters
    and step counts (``get_hyperparams`` shows them) and receive no extra
    keywords.

    Chain: ``optimizer`` evaluated at the adversarial points of
    ``adv_optimizer``, every ``sync_period``-th step (a wrapper).

    Differences: optax's signature and defaults.  optax blends states with
    ``c·a + (1-c)·b``, which turns a non-finite value in the discarded one
    into NaN; here the choice is a select.  In opaque mode ``grad_fn`` takes
    the params' tree, so it refuses to run inside ``gradtx.flatten``.
    With ``sync_period=1`` (no adversarial step) this is ``optimizer`` itself
    in both modes; optax's transparent mode then steps from the params of
    the call before.

    Args:
      optimizer: the outer optimizer (gradtx or optax).
      adv_optimizer: the adversarial one; its negated update is applied
        (``chain(normalize(), scale(-rho))``, or ``sgd(rho)`` after ``normalize()``).
      sync_period: steps per cycle k ≥ 1 (static): k - 1 adversarial, 1 outer.
      reset_state: re-initialise the adversarial statistics after each cycle.
      opaque_mode: run a whole cycle per call, with ``grad_fn``.
      batch_axis_name: in opaque mode under ``pmap``/``shard_map`` (or a named
        ``vmap``), average the adversarial gradients over this axis, or these axes
        for a tuple (``jax.lax.pmean``); refused in transparent mode, whose
        gradients come in already averaged (optax ignores it there).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.sam(gradtx.sgd(0.1), gradtx.chain(gradtx.normalize(), gradtx.scale(-0.05)))
      >>> params = {"w": jnp.array([3.0, -4.0])}
      >>> state = opt.init(params)
      >>> f = lambda p: jnp.sum(p["w"] ** 2)
      >>> for _ in range(2):  # an adversarial step, then the outer step
      ...     updates, state = opt.update(jax.grad(f)(params), state, params)
      ...     params = gradtx.apply_updates(params, updates)
      ...     print(params["w"])
      [ 3.03 -4.04]
      [ 2.394 -3.192]
      >>> # up 0.05 along g / ||g|| = (6, -8) / 10; then back to (3, -4) and an SGD step
      >>> # with the gradient taken there, (6.06, -8.08): 3 - 0.606 and -4 + 0.808

    References:
      Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for
      Efficiently Improving Generalization", ICLR 2021 (arXiv:2010.01412).
    """
    call = current_call("gradtx.sam")
    names = batch_axis_name if isinstance(batch_axis_name, tuple) else (batch_axis_name,)
    if batch_axis_name is not None and not (names and all(isinstance(n, str) for n in names)):
        raise TypeError(
            f"{call}(batch_axis_name={batch_axis_name!r}): batch_axis_name must be an axis "
            "name, a tuple of them (a mesh of several data axes) or None"
        )
    if batch_axis_name is not None and not opaque_mode:
        raise ValueError(
            f"{call}(batch_axis_name={batch_axis_name!r}): used in opaque mode only (the "
            "transparent mode takes gradients already averaged); pass opaque_mode=True"
        )
    if opaque_mode:
        return _opaque(optimizer, adv_optimizer, sync_period, reset_state, batch_axis_name, call)
    return _transparent(optimizer, adv_optimizer, sync_period, reset_state, call)
