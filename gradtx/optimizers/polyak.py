"""SGD with Polyak's step size."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Hyper
from gradtx.transforms.polyak import scale_by_polyak
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    references="`optax.polyak_sgd` (sps, sps+; `value` from `jax.value_and_grad`)",
    takes=("value",),
    max_learning_rate=NON_NEGATIVE, scaling=LEARNING_RATE, f_min=Hyper(), eps=NON_NEGATIVE,
    variant=Choice("sps", "sps+"),
)  # fmt: skip
def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """SGD with Polyak's step size (Loizou et al.'s SPS_max), as ``optax.polyak_sgd``.

    ``update(grads, state, params, value=f(θ))``, with ``value, grads =
    jax.value_and_grad(f)(params)``; with ``s`` the scaling::

      γ = min((f(θ) - f_min) / (s² ‖g‖² + eps), max_learning_rate)
      θ ← θ - γ s g                   (no step where s² ‖g‖² + eps ≤ 2.2e-16)

    ``‖g‖`` is the norm of the whole gradient tree.  ``variant="sps+"`` uses
    ``max(f(θ) - f_min, 0)`` (Garrigos et al.).

    Chain: ``scale_by_learning_rate(scaling) → scale_by_polyak(f_min,
    max_learning_rate, eps, variant)``.

    Differences: optax's signature and defaults; as in optax the norm is
    the scaled gradient's, so ``s`` scales the capped step by ``s`` and the
    uncapped one by ``1/s``.  The step is computed in at least float32
    whatever the params' dtype.  A ``value`` that is not a scalar (per-example
    losses) is refused; optax broadcasts it into one step size per element.

    Args:
      max_learning_rate: the cap on γ.
      scaling: s, a number or schedule.
      f_min: a lower bound on the loss (0 for a model that can interpolate
        the data; a wrong value can make it diverge).
      eps: added to the squared norm.
      variant: ``"sps"`` or ``"sps+"``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> f = lambda p: jnp.sum(p["w"] ** 2)
      >>> opt = gradtx.polyak_sgd()
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> state = opt.init(params)
      >>> value, grads = jax.value_and_grad(f)(params)
      >>> updates, state = opt.update(grads, state, params, value=value)
      >>> gradtx.apply_updates(params, updates)["w"]  # γ = 5 / 20
      Array([0.5, 1. ], dtype=float32)

    References:
      Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size
      for SGD", AISTATS 2021 (arXiv:2002.10542); Garrigos, Gower & Schaipp,
      "Function Value Learning", 2023 (arXiv:2307.14528).
    """
    return chain(
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, eps, variant),
    )
