"""Step sizes from the distance travelled from the initial params: DoG and DoWG.

Both keep the initial params x_0 (so ``init`` needs the real params, not
placeholders) and one scalar estimate of the distance to the solution, and
multiply their input by a step size that grows with it.  Norms and sums are
taken over the whole tree, in the state's scalar dtype (JAX's default float).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import Updates
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._build import reads_count
from gradtx._factory import factory
from gradtx._factory_state import Bound
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Hyper
from gradtx.transforms._sums import tree_difference_norm
from gradtx.transforms._sums import tree_norm
from gradtx.transforms._sums import tree_squared_norm
from gradtx.transforms.scaling import scaled

INIT_STEPS = ("distance", "learning_rate", "heuristic")


def copy_params(params: Any) -> Any:
    """A copy of the params (a distinct buffer, in the params' dtype and sharding)."""
    return jax.tree.map(jnp.array, params)


def needs_params(call: str, params: Any, why: str) -> None:
    if params is None:
        raise ValueError(f"{call}: update needs params ({why})")


class ScaleByDistanceOverGradientsState(NamedTuple):
    """State of ``scale_by_distance_over_gradients``.

    Attributes:
      initial_params: x_0, the params ``init`` was given.
      max_distance: r̄_t = max(r_ε, max_{s≤t} ||x_s - x_0||).
      sum_of_squared_norms: G_t = Σ_{s≤t} ||g_s||².
    """

    initial_params: Params
    max_distance: jax.Array
    sum_of_squared_norms: jax.Array


def _init_value_read_by_init(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    # r̄_0 comes from init_value in init: only the "learning_rate" mode reads it later
    if arguments["init_step"] == "learning_rate":
        return arguments
    return {**arguments, "init_value": Bound(arguments["init_value"])}


@factory(derive=_init_value_read_by_init,
         init_step=Choice(*INIT_STEPS), init_value=NON_NEGATIVE, eps=NON_NEGATIVE)  # fmt: skip
def scale_by_distance_over_gradients(
    init_step: str = "heuristic", init_value: float = 1e-6, eps: float = 1e-8
) -> GradientTransformation:
    """Multiply the updates by DoG's step size (Ivgi et al.): distance over gradients.

    With x_t the params at update t (from 1) and g_t the gradient::

      r̄_t = max(r̄_{t-1}, ||x_t - x_0||)        (tree norm)
      G_t = G_{t-1} + ||g_t||²                  (G_0 = 0)
      u  <- u · r̄_t / sqrt(G_t + eps)

    ``r̄_0`` (the paper's r_ε) by ``init_step``: ``"distance"``: ``init_value``;
    ``"heuristic"``: ``init_value · (1 + ||x_0||)``; ``"learning_rate"``: 0,
    and the first update's step size is ``init_value`` instead.

    ``g`` is the chain's ``grads`` keyword when present, else the input.
    ``init`` copies the params as x_0 and reads their norm (``"heuristic"``):
    give it the real initial params.

    Differences: this is the whole-tree DoG of ``optax.contrib.dog``; the
    primitive of the same name in optax, ``optax.scale_by_distance_over_gradients``,
    is layer-wise DoG (r̄ and G per leaf), which gradtx does not have.  While
    G_t + eps is 0 (``eps = 0`` and only zero gradients so far) the zero
    gradient gives a zero step here; optax's ``r̄ / 0`` times it gives NaN.

    Args:
      init_step: how ``init_value`` sets the first step (see above).
      init_value: r_ε, its heuristic factor, or the first step size.  Only as the
        first step size is it kept in the state (settable); otherwise ``init``
        reads it once and ``set_hyperparams`` refuses it.
      eps: added to G_t under the root.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_distance_over_gradients("distance", 0.5, eps=0.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)), jnp.zeros(2))[0]
      Array([0.3, 0.4], dtype=float32)

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free
      Dynamic Step Size Schedule", ICML 2023 (arXiv:2302.12022).
    """
    call = current_call("gradtx.scale_by_distance_over_gradients")
    if init_step == "learning_rate":
        reads_count()

    def init(params):
        dtype = float_dtype()
        value = jnp.asarray(init_value).astype(dtype)
        if init_step == "distance":
            r_eps = value
        elif init_step == "heuristic":
            r_eps = value * (1 + tree_norm(params, dtype))
        else:
            r_eps = jnp.zeros([], dtype)
        return ScaleByDistanceOverGradientsState(copy_params(params), r_eps, jnp.zeros([], dtype))

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the distance from the initial params")
        dtype = state.max_distance.dtype
        distance = tree_difference_norm(state.initial_params, params, dtype)
        max_distance = jnp.maximum(state.max_distance, distance)
        grads = gradient(updates, extra)
        sum_sq = state.sum_of_squared_norms + tree_squared_norm(grads, dtype)
        # With eps = 0, while every gradient has been 0 the root is 0 (``_scaled_nonzero``).
        # A non-zero gradient whose square underflowed to 0 gets r̄/0 = ∞, as in optax: a
        # size of 0 there would stop the optimizer without a sign.
        root = _numerics.safe_sqrt(sum_sq + jnp.asarray(eps).astype(dtype))
        step = max_distance / root
        if init_step == "learning_rate":
            first = step_count(extra, call) == 0
            step = jnp.where(first, jnp.asarray(init_value).astype(dtype), step)
        new_state = ScaleByDistanceOverGradientsState(state.initial_params, max_distance, sum_sq)
        return _scaled_nonzero(updates, step), new_state

    return GradientTransformation(init, update)


def _scaled_nonzero(updates: Updates, step: jax.Array) -> Updates:
    # ``step · u`` where u ≠ 0, u itself where u = 0.  With eps = 0 the step is r̄/0 or
    # 0/0 while every gradient has been 0, and ∞·0 = NaN would move a coordinate that
    # has nothing to move.  Per element, in the kernel that scales: a tree-wide test
    # "is every gradient 0" cost a conditional reading every leaf, and it nearly
    # doubled the compile time.  A finite step gives the same numbers.
    return jax.tree.map(lambda u, s: jnp.where(u == 0, u, s), updates, scaled(updates, step))


def _dowg_step(max_sq: jax.Array, weighted: jax.Array, eps: jax.Array, cap: jax.Array) -> jax.Array:
    """``r̄² / (sqrt(v) + eps)``, 0 for 0/0, at most ``cap``; once per step
    (``_control.once``): XLA copied these scalar ops into every leaf's kernel.

    ``cap`` is the largest number of the narrowest dtype a leaf is scaled in, so the
    size stays finite there and a zero update times it is 0 without a test per
    element (that test was about half of what this step's compile took above optax
    inject's)."""
    return jnp.minimum(_numerics.div0(max_sq, _numerics.safe_sqrt(weighted) + eps), cap)


class ScaleByDistanceOverWeightedGradientsState(NamedTuple):
    """State of ``scale_by_distance_over_weighted_gradients``.

    Attributes:
      initial_params: x_0, the params ``init`` was given.
      max_squared_distance: r̄²_t = max(r̄²_0, max_{s≤t} ||x_s - x_0||²).
      weighted_sum_of_squared_norms: v_t = Σ_{s≤t} r̄²_s ||g_s||².
    """

    initial_params: Params
    max_squared_distance: jax.Array
    weighted_sum_of_squared_norms: jax.Array


@factory(init_estim_sq_dist=Hyper(low=0.0, nullable=True, init_only=True), eps=NON_NEGATIVE)
def scale_by_distance_over_weighted_gradients(
    init_estim_sq_dist: float | None = None, eps: float = 1e-4
) -> GradientTransformation:
    """Multiply the updates by DoWG's step size (Khaled et al.): distance over weighted gradients.

    With x_t the params at update t (from 1) and g_t the gradient::

      r̄²_t = max(r̄²_{t-1}, ||x_t - x_0||²)     (r̄²_0 = init_estim_sq_dist, or eps)
      v_t = v_{t-1} + r̄²_t ||g_t||²             (v_0 = 0)
      u  <- u · r̄²_t / (sqrt(v_t) + eps)

    ``g`` is the chain's ``grads`` keyword when present, else the input.
    ``init`` copies the params as x_0: give it the real initial params.

    Differences: while sqrt(v_t) + eps is 0 (``eps = 0`` and only zero
    gradients so far) the zero gradient gives a zero step here; optax's
    ``r̄² / 0`` times it gives NaN.  The size is capped at the largest number
    of the narrowest leaf dtype, so a gradient whose square underflows (below
    ~1e-23 in float32) with ``eps = 0`` takes a huge step where optax's is
    infinite (with float32 and float64 leaves under x64, float32's cap makes an
    underflowed float64 gradient's step tiny instead).

    Args:
      init_estim_sq_dist: r̄²_0, the initial guess of the squared distance to
        the solution (``None``: ``eps``).
      eps: added to the root of v_t (and r̄²_0's default, read by ``init``: a
        later ``set_hyperparams`` changes only the root's term).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_distance_over_weighted_gradients(4.0, eps=0.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)), jnp.zeros(2))[0]
      Array([1.2, 1.6], dtype=float32)

    References:
      Khaled, Mishchenko & Jin, "DoWG Unleashed: An Efficient Universal
      Parameter-Free Gradient Descent Method", NeurIPS 2023 (arXiv:2305.16284).
    """
    call = current_call("gradtx.scale_by_distance_over_weighted_gradients")

    def init(params):
        dtype = float_dtype()
        first = eps if init_estim_sq_dist is None else init_estim_sq_dist
        return ScaleByDistanceOverWeightedGradientsState(
            copy_params(params), jnp.asarray(first).astype(dtype), jnp.zeros([], dtype)
        )

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the distance from the initial params")
        dtype = state.max_squared_distance.dtype
        sq_distance = tree_difference_norm(state.initial_params, params, dtype, squared=True)
        max_sq = jnp.maximum(state.max_squared_distance, sq_distance)
        grads = gradient(updates, extra)
        grad_sq = tree_squared_norm(grads, dtype)
        weighted = max_sq * grad_sq + state.weighted_sum_of_squared_norms
        # With eps = 0 the denominator is 0 while every gradient has been 0 or while r̄²
        # is 0 (its default r̄²_0 = eps): r̄²/0 is capped (zero updates stay 0) and 0/0
        # is 0.  A non-zero gradient whose square underflowed to 0 gets that huge size,
        # where optax's r̄²/0 is ∞: a size of 0 there would stop the optimizer without
        # a sign.  The cap is the narrowest leaf's: the size is kept in JAX's float
        # dtype (float64 under x64), and float64's largest number is ∞ in float32.
        widths = [jnp.finfo(_dtypes.compute_dtype(u.dtype)).max for u in jax.tree.leaves(updates)]
        cap = min(map(float, widths), default=float(jnp.finfo(dtype).max))
        operands = (max_sq, weighted, jnp.asarray(eps).astype(dtype), jnp.asarray(cap, dtype))
        step = _control.once(_dowg_step, *operands)
        new_state = ScaleByDistanceOverWeightedGradientsState(
            state.initial_params, max_sq, weighted
        )
        return scaled(updates, step), new_state

    return GradientTransformation(init, update)
