"""Rprop: resilient propagation, a step size per element driven by the gradient's sign."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.rprop import ETA_MINUS
from gradtx.transforms.rprop import ETA_PLUS
from gradtx.transforms.rprop import check_step_sizes
from gradtx.transforms.rprop import scale_by_rprop
from gradtx.transforms.scaling import scale


@optimizer(
    references="`torch.optim.Rprop` (etas, step sizes, maximize, complex); `optax.rprop` "
    '(`convention="optax"`)',
    learning_rate=LEARNING_RATE, eta_minus=ETA_MINUS, eta_plus=ETA_PLUS,
    min_step_size=NON_NEGATIVE, max_step_size=NON_NEGATIVE, maximize=Flag(), convention=CONVENTION,
    derive=check_step_sizes,
)  # fmt: skip
def rprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """Rprop (Riedmiller & Braun), as ``torch.optim.Rprop``.

    Update (``t`` from 1, ``p = g_t · g'_{t-1}``, ``g'_0 = 0``)::

      Δ_t  = clip(Δ_{t-1} · (eta_plus if p > 0, eta_minus if p < 0, 1 if p = 0),
                  min_step_size, max_step_size)                (Δ_0 = learning_rate)
      g'_t = 0 where p < 0 (the sign flipped: no step), else g_t
      θ_t  = θ_{t-1} - sign(g'_t) · Δ_t

    ``learning_rate`` is the initial step size Δ_0 of every element, not a
    multiplier of the update: each Δ then grows or shrinks on its own.  With
    ``set_hyperparams`` it is taken as Δ_0 if set before the first update;
    set later (or given as a schedule) it rescales every current Δ by
    ``new / old`` before the step's rule (see ``scale_by_rprop``).

    Chain: ``scale_by_rprop → scale(-1)`` (after ``scale(-1)`` for ``maximize``).

    Differences: torch's ``etas=(eta_minus, eta_plus)`` and
    ``step_sizes=(min_step_size, max_step_size)`` are split into four scalar
    hyperparameters (optax's names) so that each lives in state and can be set
    alone; ``min_step_size > max_step_size`` is an error (torch clips every
    step to the maximum).  torch ignores a change of ``lr`` after its first
    step (its state is built then); here it rescales the step sizes, and with a
    constant learning rate the two agree exactly.  ``convention="optax"`` is
    ``optax.rprop``'s rule: optax 0.2.8 emits each step one update late (the
    first update is zero; optax PR #1725 calls this a bug) and does not clip
    ``learning_rate`` into the bounds until a sign product is non-zero; its
    defaults are torch's.  Under both conventions ``eta_minus`` must be in
    (0, 1) and ``eta_plus`` above 1, torch's ranges; optax also takes
    ``eta_plus=1`` (steps never grow) and ``eta_minus`` of 0 or 1.
    A complex parameter is two real ones, as in torch.
    A NaN gradient makes its coordinate NaN here (docs/errors.md); torch's
    ``sign(NaN) = 0`` skips it and keeps the parameter finite.
    torch's ``foreach``, ``capturable`` and ``differentiable`` do not apply:
    they choose how torch runs the same arithmetic (a loop or fused
    multi-tensor kernels, CUDA-graph capture, autograd through the step),
    while here the step is one pure function that ``jax.jit`` compiles and
    fuses and ``jax.grad`` differentiates as it is.

    Args:
      learning_rate: Δ_0 ≥ 0, the initial per-element step size (torch's ``lr``).
      eta_minus: multiplicative shrink in (0, 1) after a sign change (``etas[0]``).
      eta_plus: multiplicative growth > 1 while the sign holds (``etas[1]``).
      min_step_size: lower bound of Δ (``step_sizes[0]``).
      max_step_size: upper bound of Δ (``step_sizes[1]``).
      maximize: ascend the objective instead (torch's).
      convention: ``"torch"`` or ``"optax"`` (the rules above).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.rprop(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jnp.array([2.0, -4.0]), state, params)
      >>> updates
      Array([-0.1,  0.1], dtype=float32)

    References:
      Riedmiller & Braun, "A direct adaptive method for faster backpropagation
      learning: the RPROP algorithm", ICNN 1993.
    """
    return chain(
        *gradient_stages(maximize=maximize),
        scale_by_rprop(
            learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, convention=convention
        ),
        scale(-1.0),
    )
