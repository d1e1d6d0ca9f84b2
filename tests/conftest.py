"""Test configuration: strict dtype promotion everywhere, x64 only where asked."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Enable float64 for one test without leaking it to the others."""
    with jax.enable_x64(True):
        yield


# A script run in a subprocess with 8 simulated devices; not a test module.
collect_ignore = ["ecosystem/_sharded_worker.py"]
