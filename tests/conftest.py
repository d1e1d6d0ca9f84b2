"""Test configuration: strict dtype promotion everywhere, x64 only where asked, and
XLA's faster-compiling CPU emitters."""

import contextlib
import os

import jax
import pytest

# Most of a test's time is XLA compiling small programs; its CPU IR emitters compile
# them in ~60% of the time its default fusion emitters take, and give the same numbers
# to rounding (tests/test_compile_flags.py bounds the gap for every optimizer).  Set before JAX starts its
# backend; subprocesses that copy the environment inherit it.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), FAST_COMPILE]))

jax.config.update("jax_numpy_dtype_promotion", "strict")


@contextlib.contextmanager
def xla_compiles():
    """XLA compiles (whole programs, not traces) while the block runs, in a list of
    their durations: jit compiles an input placed differently again, without a trace."""
    seen = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(count)


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
