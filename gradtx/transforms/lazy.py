"""Lazy updates: a transform that acts only where the gradient has entries (SparseAdam)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _state_checks
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import extras_for
from gradtx._base import gradient
from gradtx._base import kind_of
from gradtx._factory import factory
from gradtx._specs import Transform
from gradtx.optimizers.lookahead import LookaheadState
from gradtx.optimizers.sam import SamState
from gradtx.transforms.averaging import PolyakAverageState
from gradtx.transforms.factored import ScaleByFactoredRmsState
from gradtx.transforms.low_rank import ScaleByGaloreState
from gradtx.wrappers.accumulation import AccumulateGradientsState
from gradtx.wrappers.averaging import AverageParamsState
from gradtx.wrappers.flatten import FlattenState
from gradtx.wrappers.groups import MaskedNode

# Leaves a masked stage hides: gradtx's masked and partition, and optax's masked.
HIDDEN = (MaskedNode, optax.MaskedNode)

# What lazy cannot wrap, and why: flat buffers, and wrappers whose params-shaped
# buffers are bookkeeping, not statistics (a gradient sum to clear, SAM's saved params,
# slow weights to sync, an average of the params).  Kept where g = 0 they would carry a
# sum into the next cycle or step from stale params.
_MUST_MOVE = "whose buffers must change where the gradient is 0 too"
_PROJECTED = "whose statistics live in a projected space, where no element is a parameter's"


class _Refusal(NamedTuple):
    """A state lazy refuses: who makes it, why, and what to do instead (``None``: make
    the optimizer the wrapper holds lazy)."""

    name: str
    why: str
    hint: str | None = None


_CANNOT = "it cannot be lazy"  # nothing inside to make lazy
REFUSED = {
    FlattenState: _Refusal(
        "gradtx.flatten",
        "whose buffers are flat, where no element can be told from its parameter's",
    ),
    AccumulateGradientsState: _Refusal("gradtx.accumulate_gradients", _MUST_MOVE),
    SamState: _Refusal("gradtx.sam", _MUST_MOVE),
    LookaheadState: _Refusal("gradtx.lookahead", _MUST_MOVE),
    AverageParamsState: _Refusal("gradtx.average_params", _MUST_MOVE),
    # asgd's too; a stage of a chain, not a wrapper
    PolyakAverageState: _Refusal(
        "gradtx.polyak_average",
        _MUST_MOVE,
        "chain it after the lazy stages instead "
        "(gradtx.chain(gradtx.lazy(...), gradtx.polyak_average(t0)))",
    ),
    optax.MultiStepsState: _Refusal("optax.MultiSteps", _MUST_MOVE),
    optax.LookaheadState: _Refusal("optax.lookahead", _MUST_MOVE),
    optax.contrib.SAMState: _Refusal("optax.contrib.sam", _MUST_MOVE),
    ScaleByGaloreState: _Refusal("gradtx.galore", _PROJECTED, _CANNOT),
    optax.contrib.GaLoreState: _Refusal("optax.contrib.galore", _PROJECTED, _CANNOT),
}


class LazyState(NamedTuple):
    """``inner_state``: the wrapped transform's state."""

    inner_state: OptState


def _factored_advance(masks: Any) -> Any:
    """``masks`` with ``True`` for Adafactor's row and column statistics, whatever their
    shape: an (n, 1) param's row statistic keeps the param's shape, so ``_mask`` took
    it for a per-element buffer (optax's ``FactoredState`` drops the reduced axis)."""

    def advance(node):
        if not isinstance(node, ScaleByFactoredRmsState):
            return node
        everywhere = lambda t: jax.tree.map(lambda _: True, t)  # noqa: E731
        return node._replace(nu_row=everywhere(node.nu_row), nu_col=everywhere(node.nu_col))

    return jax.tree.map(advance, masks, is_leaf=lambda n: isinstance(n, ScaleByFactoredRmsState))


def _layout(inner: optax.GradientTransformation, state: Any) -> Any:
    """What ``optax.tree_map_params`` inits to find ``inner``'s params-like trees: its
    state on optax's params placeholder, with a number wherever ``state`` holds one
    in place of a schedule (optax's ``tree_set`` replaces a schedule so; init's
    schedule there would not fit).  An init that cannot run on the placeholder
    (``optax.lbfgs``'s line search reads a params leaf) is named."""

    def init(placeholder):
        try:
            made = inner.init(placeholder)
        except Exception as err:
            raise ValueError(
                "gradtx.lazy: the inner optimizer's init fails on the params placeholder of "
                f"optax.tree_map_params ({type(err).__name__}: {err}), which lazy needs to "
                "find its params-shaped buffers (optax's zoom line search, in optax.lbfgs, "
                'reads a params leaf there; gradtx.lbfgs(convention="optax") does not)'
            ) from err
        return _state_checks.as_driven(state, made)

    return init


def _slot_masks(keep: Any, buffers: Any) -> Any:
    """The masks of one params-like tree of the state (a slot per params leaf), walked
    with the gradient's ``keep`` down to whichever ends first: a masked stage's hidden
    node (a leaf's or, from an optax mask that is a prefix of the params, a subtree's)
    stays as it is; at a leaf of ``keep``, ``_mask``.  Neither tree can lead a plain
    ``tree.map``: a hidden subtree ends the buffers early, SM3's per-axis list late."""
    if isinstance(buffers, HIDDEN):
        return buffers
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(keep)):
        return _mask(keep, buffers)
    # one level down: keep's children, each with the buffers' subtree in its place
    return jax.tree.map(_slot_masks, keep, buffers, is_leaf=lambda x: x is not keep)


def _mask(keep: jax.Array, buffers: Any) -> Any:
    """The masks of one params leaf's slot (a buffer, or a subtree of them): ``keep``
    for each buffer with the param's shape; ``True`` (advance) for what is not per
    element (Adafactor's factored rows and columns and their placeholders, SM3's
    per-axis vectors of a matrix, optax L-BFGS's memory stacked over the history)."""

    def one(buffer):
        per_element = isinstance(buffer, (jax.Array, np.ndarray)) and buffer.shape == keep.shape
        return keep if per_element else True

    return jax.tree.map(one, buffers)


def _has_entry(g: jax.Array) -> jax.Array:
    """``g != 0``, also where ``g`` is subnormal: XLA on CPU compares a subnormal as 0
    (flush to zero), while torch's sparse gradient stores it and its element moves.
    The bits without the sign are tested instead."""
    if jnp.iscomplexobj(g):
        return _has_entry(jnp.real(g)) | _has_entry(jnp.imag(g))
    if not jnp.issubdtype(g.dtype, jnp.floating):
        return g != 0
    bits = jax.lax.bitcast_convert_type(g, jnp.dtype(f"uint{8 * g.dtype.itemsize}"))
    return jnp.left_shift(bits, 1) != 0


@factory(inner=Transform())
def lazy(inner: optax.GradientTransformation) -> GradientTransformation:
    """Run ``inner`` only on the elements where the gradient is non-zero.

    Where ``g = 0`` the output is 0 and every params-shaped buffer of
    ``inner``'s state (a moment, a step size) keeps its value; elsewhere
    both are ``inner``'s.  That is ``torch.optim.SparseAdam``'s lazy rule
    for gradients with a sparse layout (an embedding table's, where the rows a
    batch did not touch have no entries), read on JAX's dense gradients: an
    entry is a non-zero element (a subnormal one too, which XLA on CPU would
    compare equal to 0).  State that is not shaped like the params
    (counters, scalars, Adafactor's factored rows and columns, SM3's per-axis
    accumulators of a matrix, the stacked memory of ``lbfgs(convention="optax")``)
    advances on every step.

    The buffers are found as ``optax.tree_map_params`` finds them: by
    initialising ``inner`` on a placeholder params tree (an ``inner`` whose
    ``init`` cannot run on it, ``optax.lbfgs``, is refused at ``init``).
    ``g`` is the chain's ``grads`` keyword when present, else the input.
    Wrappers whose params-shaped buffers are bookkeeping
    (``accumulate_gradients``, ``sam``, ``lookahead``, ``average_params``,
    optax's ``MultiSteps``, ``lookahead`` and ``sam``) and ``flatten`` are
    refused inside, at ``init``: make the optimizer they wrap lazy instead.
    So is a parameter average (``polyak_average``, ``asgd``'s), which has
    nothing inside to make lazy, and ``galore``, whose statistics are of the
    projected gradients.

    Args:
      inner: the transform to make lazy (a chain of statistics, an optimizer).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.lazy(gradtx.add_momentum(0.5))
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, 1.0]), state)
      >>> tx.update(jnp.array([1.0, 0.0]), state)[0]  # element 2: no entry, no step, m kept
      Array([1.5, 0. ], dtype=float32)
    """

    def refuse(state):
        for s in _tree.nodes(state, tuple(REFUSED)):
            name, why, hint = next(v for kind, v in REFUSED.items() if isinstance(s, kind))
            hint = hint or f"make the optimizer inside it lazy instead ({name}(gradtx.lazy(...)))"
            raise ValueError(f"gradtx.lazy: the inner optimizer holds {name}, {why}; {hint}")

    def init(params):
        inner_state = inner.init(params)
        # what the first update would refuse, refused now
        refuse(inner_state)
        optax.tree_map_params(_layout(inner, inner_state), lambda b: b, inner_state)
        return LazyState(inner_state)

    def update(updates, state, params=None, **extra):
        refuse(state)
        keep = jax.tree.map(_has_entry, gradient(updates, extra))
        out, new = inner.update(updates, state.inner_state, params, **extras_for(inner, extra))
        # A tree like the state: each buffer leaf its params leaf's mask, others True.
        # A masked stage's hidden leaf (masked, partition) stays hidden in the masks.
        masks = optax.tree_map_params(
            _layout(inner, new),
            lambda buffers, k: _slot_masks(k, buffers),
            new,
            keep,
            transform_non_params=lambda _: True,
            is_leaf=lambda _: True,  # each params-like tree whole, for _slot_masks
        )
        masks = _factored_advance(masks)

        def select(k, n, o):
            return n if k is True else jnp.where(k, n, o)

        inner_state = jax.tree.map(select, masks, new, state.inner_state)
        out = jax.tree.map(lambda k, u: jnp.where(k, u, jnp.zeros_like(u)), keep, out)
        return out, LazyState(inner_state)

    return kind_of(inner)(init, update)
