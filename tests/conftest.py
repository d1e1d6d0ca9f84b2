"""Test configuration: strict dtype promotion everywhere, x64 only where asked."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Enable float64 for one test without leaking it to the others."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def torch64():
    """torch's default dtype float64 for one test, restored after: torch keeps some
    scalars in it (NAdam's momentum product, ASGD's eta and mu), which in float32
    would cap agreement with a float64 run at ~1e-7."""
    import torch  # only the tests that compare with torch import it

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# Scripts run in subprocesses with simulated devices; not test modules.
collect_ignore = ["ecosystem/_sharded_worker.py", "ecosystem/_multiprocess_worker.py"]
