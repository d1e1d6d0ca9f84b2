"""DP-SGD: gradient descent on clipped, noised per-example gradients."""

from __future__ import annotations

from typing import Any

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import MOMENTUM
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx.optimizers._stages import descent
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.noise import Seed
from gradtx.transforms.privacy import differentially_private_aggregate


@optimizer(
    references="`optax.contrib.dpsgd` (momentum, Nesterov; the same noise for the same seed, "
    "float32/float64)",
    example_axis=True,
    learning_rate=LEARNING_RATE,
    l2_norm_clip=NON_NEGATIVE,
    noise_multiplier=NON_NEGATIVE,
    seed=Seed(),
    momentum=MOMENTUM._replace(optional=True),
    nesterov=Flag(),
)
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: float,
    noise_multiplier: float,
    seed: Any,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """DP-SGD (Abadi et al.), as ``optax.contrib.dpsgd``.

    ``update`` takes per-example gradients: every leaf has a leading example
    axis (``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)``); the
    updates have the params' shapes.  With ``B`` examples, ``C = l2_norm_clip``
    and ``σ = noise_multiplier``::

      g_t = (Σ_i g_{t,i} min(1, C / ‖g_{t,i}‖) + C σ ξ_t) / B,    ξ_t ~ N(0, I)
      m_t = μ m_{t-1} + g_t   (m_0 = 0; with ``nesterov`` the step uses g_t + μ m_t)
      θ_t = θ_{t-1} - η_t m_t

    ``‖g_{t,i}‖`` is example i's gradient norm over the whole params tree
    (all leaves together), as in optax.

    Chain: ``differentially_private_aggregate(C, σ, seed) → add_momentum(μ,
    nesterov) → scale_by_learning_rate`` (no momentum stage for ``None``).

    Differences: none from ``optax.contrib.dpsgd`` for float32 and float64
    params; the noise is optax's for the same ``seed`` (an int, or a
    ``jax.random.key``).  16-bit leaves are summed and noised in float32 (see
    ``differentially_private_aggregate``).  ``nesterov`` without momentum (or
    with 0) is plain SGD, as in optax.  The privacy accounting (ε, δ
    from σ, the sampling rate and the steps) is not part of the optimizer.
    ``optax.MultiSteps`` and ``gradtx.accumulate_gradients`` do not compose with
    it (they would average privatized gradients); use larger batches instead.

    Args:
      learning_rate: η, a number or schedule.
      l2_norm_clip: C ≥ 0, the largest norm an example's gradient keeps.
      noise_multiplier: σ ≥ 0, the noise's standard deviation in units of C.
      seed: an int seed or a PRNG key for the noise.
      momentum: μ in [0, 1]; ``None``: plain SGD.
      nesterov: Nesterov momentum (without momentum: plain SGD).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.1, seed=0)
      >>> params = {"w": jnp.zeros(2)}
      >>> xs, ys = jnp.ones((8, 2)), jnp.arange(8.0)
      >>> loss = lambda p, x, y: (x @ p["w"] - y) ** 2
      >>> grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(params, xs, ys)
      >>> grads["w"].shape  # one gradient per example
      (8, 2)
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> updates["w"].shape
      (2,)

    References:
      Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
    """
    # Nesterov with no momentum is g + 0 · m: plain SGD, which optax also runs.
    core = [] if momentum is None else [add_momentum(momentum, nesterov=nesterov)]
    return descent(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed=seed),
        *core,
        learning_rate=learning_rate,
    )
