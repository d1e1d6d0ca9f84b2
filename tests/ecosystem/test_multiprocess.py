"""gradtx on JAX's multi-controller runtime: two processes, one 4-device job.

``_multiprocess_worker.py`` runs as two processes with 2 simulated CPU devices each,
joined by ``jax.distributed.initialize`` on 127.0.0.1 and gloo collectives, training
one model on a 2 x 2 ("data", "model") mesh with ``apply_if_finite(partition(adamw
with a warmup-cosine schedule))``.  Checked here:

- the params and optimizer state after 8 steps (one skipped NaN batch, one
  ``set_hyperparams``) equal a one-process, one-device run, with the state sharded like
  the params and with ZeRO-1; float64, relative 1e-12 (see ``_assert_close``);
- both processes end with bitwise the same numbers, and the step was traced once;
- checkpointed with orbax by both processes, restored by two new processes and
  continued, the run is bitwise the uninterrupted one;
- when one process is SIGKILLed mid-run, the other dies too, with JAX's message,
  within seconds instead of hanging.

docs/distributed.md shows the commands these tests run.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "ecosystem", "_multiprocess_worker.py")
HEARTBEAT = 5  # seconds, for the death test: how long until a silent peer counts as dead
FATAL = "Terminating process because the JAX distributed service detected fatal errors"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices):
    env = {
        k: v
        for k, v in os.environ.items()
        # JAX warns that proxy variables can hang jax.distributed.initialize; none is needed.
        if not k.lower().endswith("_proxy")
    }
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    if devices > 1:  # after the conftest's flags
        env["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={devices}"
    return env


class _Job:
    """Worker processes with their logs in files, killed as process groups if left over."""

    def __init__(self, tmp_path, mode, extra_args=((), ())):
        self.logs, self.procs = [], []
        if mode == "reference":
            commands = [[WORKER, "reference", "--dir", str(tmp_path)]]
            devices = 1
        else:
            coordinator = f"127.0.0.1:{_free_port()}"
            commands = [
                [WORKER, mode, "--process-id", str(i), "--coordinator", coordinator]
                + ["--dir", str(tmp_path), *extra_args[i]]
                for i in range(2)
            ]
            devices = 2
        for i, cmd in enumerate(commands):
            log = tmp_path / f"{mode}-{i}.log"
            with open(log, "w") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, *cmd],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=_env(devices),
                        cwd=ROOT,
                        start_new_session=True,  # its own group, so a kill takes any children
                    )
                )
            self.logs.append(log)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def output(self):
        return "".join(f"--- {log.name}\n{log.read_text()}" for log in self.logs)

    def port_taken(self):
        # _free_port's port can be bound by another program before process 0 binds it.
        return "Failed to start RPC server" in self.logs[0].read_text()

    def wait(self, timeout, give_up=lambda code: code != 0):
        """Exit times (time.monotonic()) of the processes.

        Stops waiting, and kills the others, once one exits with a code ``give_up``
        accepts: the peer of a failed process would otherwise wait out a JAX timeout.
        """
        deadline = time.monotonic() + timeout
        ended = [None] * len(self.procs)
        try:
            while None in ended:
                for i, p in enumerate(self.procs):
                    if ended[i] is None and p.poll() is not None:
                        ended[i] = time.monotonic()
                        if give_up(p.returncode):
                            return ended
                if time.monotonic() > deadline:
                    pytest.fail(f"workers still running after {timeout} s\n{self.output()}")
                time.sleep(0.05)
        finally:
            self.kill()
        return ended

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def check(self, timeout):
        self.wait(timeout)
        codes = [p.returncode for p in self.procs]
        assert codes == [0] * len(codes), f"exit codes {codes}\n{self.output()}"


def _pair(tmp_path, mode, body, extra_args=((), ())):
    """``body(job)`` on a 2-process job, started again on a new port if the first was taken."""
    for attempt in range(3):
        with _Job(tmp_path, mode, extra_args) as job:
            try:
                return body(job)
            except (AssertionError, pytest.fail.Exception):
                if attempt == 2 or not job.port_taken():
                    raise


def _load(tmp_path, name):
    with np.load(tmp_path / f"{name}.npz") as f:
        return dict(f)


def _assert_bitwise(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k}", strict=True)


def _assert_close(a, b, what):
    # Sharded, the batch mean and w2's contraction are summed in other orders (per device,
    # then across devices); float64 rounding makes that ~1e-15 relative after 8 Adam steps
    # (6.5e-15 measured).  A real fault (a missed all-reduce, half a batch, another learning
    # rate) is off by 1e-3 or more, so 1e-12 tells the two apart with room to spare.
    assert a.keys() == b.keys(), what
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (what, k)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-14, err_msg=f"{what}: {k}")


def test_two_processes_train_as_one_and_resume_bitwise(tmp_path):
    with _Job(tmp_path, "reference") as reference:
        _pair(tmp_path, "train", lambda job: job.check(timeout=240))
        reference.check(timeout=120)
    # A restart is new processes that only share the checkpoint directory.
    assert (tmp_path / "ckpt").is_dir()
    _pair(tmp_path, "resume", lambda job: job.check(timeout=240))

    ref = _load(tmp_path, "reference-p0")
    assert ref["traces"] == 1
    assert np.isnan(ref["losses"]).sum() == 1 and ref["state.total_notfinite"] == 1
    assert all(np.isfinite(v).all() for k, v in ref.items() if k.startswith("params"))
    peaks = [k for k in ref if k.endswith("learning_rate.peak_value")]
    assert len(peaks) == 2 and all(ref[k] == 2e-2 for k in peaks)  # set mid-run

    for run in ("train-sharded", "train-zero1", "resume-zero1"):
        p0, p1 = _load(tmp_path, f"{run}-p0"), _load(tmp_path, f"{run}-p1")
        _assert_bitwise(p0, p1, f"{run}: process 0 vs process 1")
        assert p0["traces"] == 1, f"{run}: traced {p0['traces']} times"
        if run.startswith("train"):
            _assert_close(p0, ref, f"{run} vs one device")

    uninterrupted = _load(tmp_path, "train-zero1-p0")
    resumed = _load(tmp_path, "resume-zero1-p0")
    tail = len(resumed["losses"])
    assert 0 < tail < len(uninterrupted["losses"])
    _assert_bitwise(
        {k: v for k, v in resumed.items() if k != "losses"},
        {k: v for k, v in uninterrupted.items() if k != "losses"},
        "resumed vs uninterrupted",
    )
    np.testing.assert_array_equal(resumed["losses"], uninterrupted["losses"][-tail:], strict=True)


@pytest.mark.parametrize("victim", [1, 0], ids=["worker-dies", "coordinator-dies"])
def test_a_dying_process_takes_the_other_down_quickly(tmp_path, victim):
    extra = [["--heartbeat", str(HEARTBEAT)] for _ in range(2)]
    extra[victim] += ["--die-at", "3"]
    survivor = 1 - victim

    def body(job):
        # Deaths end in signals; a positive code is a Python error, not worth waiting on.
        ended = job.wait(timeout=240, give_up=lambda code: code > 0)
        out = job.output()
        assert job.procs[victim].returncode == -signal.SIGKILL, out
        assert job.procs[survivor].returncode not in (0, None), out
        assert "OK train" not in job.logs[survivor].read_text(), out
        assert FATAL in job.logs[survivor].read_text(), out
        # The coordinator's loss is seen at once; a lost worker after the heartbeat timeout.
        assert ended[survivor] - ended[victim] < HEARTBEAT + 25, out

    _pair(tmp_path, "train", body, extra_args=extra)
