"""SWATS: start with Adam, switch to SGD with momentum."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Flag
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.bounds import scale_by_bounded_rms
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.switch import switch_to_sgd


@optimizer(
    references="NumPy transcription of Keskar & Socher's Alg. 1 across the switch (whole tree "
    "and per leaf); SGD phase vs `pytorch_optimizer.SWATS`; Adam phase vs `torch_optimizer.SWATS`",
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE, nesterov=Flag(),
    weight_decay=WEIGHT_DECAY, per_leaf=Flag(),
)  # fmt: skip
def swats(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-9,
    *,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    per_leaf: bool = False,
) -> GradientTransformation:
    """SWATS (Keskar & Socher): Adam, then SGD with momentum at an estimated rate.

    Algorithm 1 of the paper (``k`` from 1, ``g_k`` the gradient plus ``λθ`` if
    ``weight_decay``)::

      Adam phase:
        m_k = b1 m_{k-1} + (1 - b1) g_k,   a_k = b2 a_{k-1} + (1 - b2) g_k²
        p_k = -α sqrt(1 - b2^k) / (1 - b1^k) · m_k / (sqrt(a_k) + eps)
        θ_k = θ_{k-1} + p_k
        if p_kᵀg_k ≠ 0:
          γ_k = p_kᵀp_k / (-p_kᵀg_k),   λ_k = b2 λ_{k-1} + (1 - b2) γ_k
          if k > 1 and |λ_k / (1 - b2^k) - γ_k| < eps:
            switch to SGD with Λ = λ_k / (1 - b2^k), v = 0
      SGD phase (from the next step on):
        v_k = b1 v_{k-1} + g_k,   θ_k = θ_{k-1} - (1 - b1) Λ v_k

    By default the dot products run over the whole parameter tree, so the model
    switches once, as the algorithm box is written; ``per_leaf=True`` estimates
    and switches each leaf on its own (what both PyTorch packages do per tensor).
    The switch is data (``jnp.where``), inside ``jit``.  Read the outcome with
    ``gradtx.get_hyperparams(state)``: ``switched``, ``switch_step`` and
    ``sgd_learning_rate`` (Λ); ``set_hyperparams`` can force a switch.  A NaN
    gradient makes the params NaN (visible); under ``apply_if_finite`` the
    step is skipped whole, the switch statistics included.

    Chain: ``add_l2 → switch_to_sgd(chain(add_momentum(b1, ema=True),
    scale_by_bounded_rms(b1, b2, eps), scale_by_learning_rate(α)), b1, b2, eps)``:
    the Adam phase is the unclipped E2 step of ``scale_by_bounded_rms``.

    Differences:
      * The paper's test is absolute (``eps``, also the Adam eps).
        ``pytorch_optimizer.SWATS`` tests ``isclose(Λ, γ, rtol=eps)`` with
        ``Λ > 0``, puts 1e-15 inside the root and adopts the Λ of the last
        eligible tensor for the whole group; ``torch_optimizer.SWATS`` uses
        ``eps=1e-3`` with rtol 1e-6 and scales its momentum buffer in place (its
        SGD phase decays by ``b1 (1 - b1)``).  Both packages also require
        ``Λ > 0``; the paper does not, and neither does this.
      * The SGD phase equals ``pytorch_optimizer.SWATS``'s (tested); its
        ``nesterov`` gives ``(1 - b1) v + b1 v = v``, not a look-ahead; here
        Nesterov is ``-(1 - b1) Λ (g_k + b1 v_k)``.
      * A schedule on ``learning_rate`` drives the Adam phase only; Λ is not
        scheduled (a torch LR scheduler would overwrite the switched rate).
      * ``weight_decay`` is L2 (as both packages' default); the paper has none.

    Args:
      learning_rate: α of the Adam phase (number or schedule).
      b1: Adam's first-moment decay and the SGD momentum, in [0, 1).
      b2: Adam's second-moment decay and the decay of the γ average, in [0, 1).
      eps: Adam's eps and the switch tolerance (the paper's 1e-9).
      nesterov: Nesterov momentum in the SGD phase.
      weight_decay: λ of the L2 term.
      per_leaf: one estimate and switch per leaf instead of for the whole tree.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.swats(1e-3)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> bool(gradtx.get_hyperparams(state)["switched"])
      False

    References:
      Keskar & Socher, "Improving Generalization Performance by Switching from
      Adam to SGD", arXiv:1712.07628, 2017.
    """
    adam = chain(
        add_momentum(b1, ema=True),
        scale_by_bounded_rms(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )
    switch = switch_to_sgd(adam, b1, b2, eps, nesterov=nesterov, per_leaf=per_leaf)
    return chain(*gradient_stages(weight_decay), switch)
