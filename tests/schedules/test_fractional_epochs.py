"""torch's CosineAnnealingWarmRestarts stepped by fractional epochs against gradtx."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from gradtx import schedules as S


@pytest.mark.parametrize("t_mult", [1, 2])
def test_cosine_annealing_warm_restarts_with_fractional_epochs_matches_torch(x64, t_mult):
    """torch's idiom ``scheduler.step(epoch + i / iters)`` after each ``opt.step()``:
    update k (from 0) runs at sgdr(k - 1) with periods counted in updates
    (``T_0 * iters``), the peak at update 0, which is ``join`` of one peak step and sgdr."""
    iters, epochs, t0, peak, eta_min = 4, 14, 2, 0.1, 1e-3
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=t_mult, eta_min=eta_min)  # fmt: skip
    torch_lrs = []
    for epoch in range(epochs):
        for i in range(iters):
            torch_lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(epoch + i / iters)
    ours = S.join(
        [S.constant(peak), S.sgdr(peak, t0 * iters, period_mult=t_mult, min_value=eta_min)],
        boundaries=[1],
    )
    gradtx_lrs = [float(ours(jnp.asarray(k))) for k in range(len(torch_lrs))]
    np.testing.assert_allclose(gradtx_lrs, torch_lrs, rtol=1e-10)
