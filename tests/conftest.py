"""Test configuration: strict dtype promotion everywhere, x64 only where asked, and
XLA's faster-compiling CPU emitters."""

import atexit
import contextlib
import os
import shutil
import tempfile

import jax
import pytest

# Most of a test's time is XLA compiling small programs; its CPU IR emitters compile
# them in ~60% of the time its default fusion emitters take, and give the same numbers
# to rounding (tests/test_compile_flags.py bounds the gap for every optimizer).  Set before JAX starts its
# backend; subprocesses that copy the environment inherit it.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), FAST_COMPILE]))

jax.config.update("jax_numpy_dtype_promotion", "strict")

# Many tests compile a program another test already compiled (a reference optimizer's
# step, an eager operation built afresh): each test process compiles each distinct
# program once, through a persistent cache of its own that starts empty and goes when
# the process ends (one per process: no two writers, and no eviction scan, which reads
# the whole directory at every write).  The key holds the program, the compile options
# and XLA_FLAGS, so a hit is the executable the compile would have built.  Measured on
# the reference tests: 19% less wall time.  Subprocesses the tests start get none.
_CACHE = tempfile.mkdtemp(prefix="gradtx-tests-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@contextlib.contextmanager
def xla_compiles():
    """XLA compiles (whole programs, not traces) while the block runs, in a list of
    their durations: jit compiles an input placed differently again, without a trace.
    A program found in the process's compile cache (above) counts: a user without
    that cache would have compiled it."""
    seen = []

    def count(event, duration, **kwargs):
        if event in (
            "/jax/core/compile/backend_compile_duration",
            "/jax/compilation_cache/cache_retrieval_time_sec",  # recorded on a hit only
        ):
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
