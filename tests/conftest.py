"""Test configuration: strict dtype promotion everywhere, x64 only where asked."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Enable float64 for one test without leaking it to the others."""
    with jax.enable_x64(True):
        yield


# Scripts run in subprocesses with simulated devices; not test modules.
collect_ignore = ["ecosystem/_sharded_worker.py", "ecosystem/_multiprocess_worker.py"]
