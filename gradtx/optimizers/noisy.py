"""Noisy SGD: gradient descent on gradients with annealed Gaussian noise."""

from __future__ import annotations

from typing import Any

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Anything
from gradtx._specs import Hyper
from gradtx.optimizers._stages import descent
from gradtx.transforms.noise import add_noise


@optimizer(
    references="`optax.noisy_sgd` (the same noise for the same `key`/`seed`)",
    learning_rate=LEARNING_RATE,
    eta=NON_NEGATIVE,
    gamma=Hyper(),
    key=Anything(),
    seed=Anything(),
)
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: Any = None,
    *,
    seed: Any = None,
) -> GradientTransformation:
    """Noisy SGD (Neelakantan et al.), as ``optax.noisy_sgd``.

    Update (``t`` from 1)::

      θ_t = θ_{t-1} - η_t (g_t + sqrt(eta / t^gamma) ξ_t),     ξ_t ~ N(0, I)

    The noise is drawn exactly as optax draws it (see ``add_noise``): the same
    ``key`` (an int seed or a ``jax.random.key``) or ``seed`` gives the same
    trajectory.  The key lives in the state, so runs are reproducible and
    ``jit`` and eager agree; ``set_hyperparams`` changes ``eta`` and ``gamma``
    (and the learning rate) but not the key.

    Chain: ``add_noise(eta, gamma, key) → scale_by_learning_rate``.

    Differences: none from ``optax.noisy_sgd`` in the numbers.  Without a
    key both use seed 0; optax warns that a key will be required, gradtx does
    not.  The noise depends on the leaves' shapes, so it refuses to run inside
    ``gradtx.flatten``.  Each ``noisy_sgd`` draws from its own key over the
    leaves it sees: two groups of a ``gradtx.partition`` built with the same
    key (or none) give the same noise to leaves of one shape at the same place
    in their groups (each group's first leaf, ...), where one ``noisy_sgd``
    over the whole tree draws each leaf's apart; give each group its own key.

    Args:
      learning_rate: η, a number or schedule.
      eta: the noise's initial variance.
      gamma: its annealing exponent (variance ``eta / t^gamma``).
      key: an int seed or a PRNG key; ``None``: seed 0.
      seed: optax's deprecated spelling of an int ``key`` (give one of them).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.noisy_sgd(0.1, eta=0.04, key=jax.random.key(0))
      >>> params = {"w": jnp.zeros(1000)}
      >>> updates, state = opt.update({"w": jnp.zeros(1000)}, opt.init(params))
      >>> # g = 0: the update is the noise alone, -η sqrt(eta / 1^gamma) ξ = -0.1 · 0.2 ξ
      >>> round(float(jnp.std(updates["w"])), 2)  # 1000 draws: about 0.02
      0.02

    References:
      Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
      Networks", 2015 (arXiv:1511.06807).
    """
    return descent(add_noise(eta, gamma, key, seed=seed), learning_rate=learning_rate)
