"""``python -m gradtx``: the digits demo runs, prints its table, writes a PNG, rejects bad options."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import __main__ as cli
from gradtx import demo
from gradtx._registry import OPTIMIZERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_runs_prints_table_and_writes_png(tmp_path):
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, "-m", "gradtx", "--optimizers", "sgd-momentum,adam", "--epochs", "2",
         "--hidden", "16", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    assert lines[header].split()[1:] == ["train", "loss", "train", "acc", "test", "loss", "test",
                                         "acc", "time", "(s)", "compile", "(s)"]  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2 : header + 4]}
    assert set(rows) == {"sgd-momentum", "adam"}
    for values in rows.values():
        train_loss, train_acc, test_loss, test_acc, seconds, compile_seconds = map(float, values)
        assert (
            0 < train_loss < np.log(10.0) and 0 <= train_acc <= 1 and 0 <= test_acc <= 1
        )  # < chance
        assert test_loss > 0 and seconds >= 0 and compile_seconds > 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_lr_find_prints_suggestions_and_writes_the_plot(tmp_path):
    out = tmp_path / "lr.png"
    proc = subprocess.run(
        [sys.executable, "-m", "gradtx", "--lr-find", "--optimizers", "sgd-momentum,adam",
         "--hidden", "16", "--lr-steps", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    assert lines[header].split()[1:] == ["suggested", "lr", "base", "lr", "max", "lr", "steps",
                                         "run", "demo's", "lr"]  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2 : header + 4]}
    assert set(rows) == {"sgd-momentum", "adam"}
    for values in rows.values():
        suggested, base, high = map(float, values[:3])
        run, planned = map(int, values[3].split("/"))
        assert 1e-7 < base < high < 10 and 1e-7 < suggested < 10 and planned == 60
        assert 0 < run <= planned
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_lr_find_in_process_matches_the_library():
    data = demo.load_digits(seed=0)
    results = demo.lr_find(["adam"], data, batch_size=32, hidden=(8,), seed=0, num_steps=30)
    result = results["adam"]
    assert result.losses.shape == (demo.LR_FIND_RUNS, 30)
    assert result.learning_rates[0] == pytest.approx(1e-7) and result.learning_rates[-1] == 10.0


def test_lr_table_shows_the_demos_lr_of_optimizers_without_a_recipe():
    """It read RECIPES[name] and raised KeyError for the 40 optimizers without one."""
    data = demo.load_digits(seed=0)
    results = demo.lr_find(
        ["adabelief", "prodigy"], data, batch_size=32, hidden=(8,), seed=0, num_steps=30
    )
    rows = {line.split()[0]: line.split() for line in demo.format_lr_table(results).splitlines()}
    assert rows["adabelief"][-1] == "0.001"  # the demo's lr where the factory needs one
    assert rows["prodigy"][-1] == "1"  # the factory's default


def test_training_is_deterministic_and_learns():
    data = demo.load_digits(seed=3)
    kw = dict(epochs=3, batch_size=128, hidden=(16,), seed=3, progress=False)
    a = demo.train("sgd-momentum", data, **kw)
    b = demo.train("sgd-momentum", data, **kw)
    np.testing.assert_array_equal(a.history, b.history)
    assert a.history[-1, 0] < a.history[0, 0] < np.log(10.0)  # train loss falls from chance
    assert a.history[-1, 3] > 0.8


def test_default_optimizers_are_the_seven():
    args = cli.parse_args([])
    assert args.optimizers == ["sgd-momentum", "adam", "adamw", "radam", "adabound", "swats",
                               "ranger"]  # fmt: skip


def test_every_registered_optimizer_is_offered_but_the_wrappers():
    offered = {demo.recipe(name).factory for name in demo.available()}
    assert set(OPTIMIZERS) - offered == {"lookahead", "mechanize", "sam"}  # need an optimizer


def _small_epoch(name):
    data = demo.load_digits(seed=0)
    small = demo.Data(data.x_train[:96], data.y_train[:96], data.x_test[:32], data.y_test[:32])
    opt = demo.make_optimizer(name)
    params = demo.init_mlp(jax.random.PRNGKey(0), [64, 8, 10])
    epoch = demo.make_epoch(
        opt, small, 32, demo.takes(name), demo.per_example(name), demo.evaluation_point(name)
    )
    return epoch, params, opt.init(params)


def test_schedule_free_metrics_are_taken_at_the_average():
    # The demo reports what the docstrings say to evaluate: x, not the iterate y.
    name = "schedule_free_adamw"
    data = demo.load_digits(seed=0)
    small = demo.Data(data.x_train[:96], data.y_train[:96], data.x_test[:32], data.y_test[:32])
    opt = demo.make_optimizer(name)
    params = demo.init_mlp(jax.random.PRNGKey(0), [64, 8, 10])
    epoch = demo.make_epoch(opt, small, 32, evaluate=demo.evaluation_point(name))
    params, state, metrics = epoch(params, opt.init(params), jax.random.PRNGKey(1))
    at = gradtx.schedule_free_eval_params(state, params)
    want = demo.loss_and_accuracy(at, jnp.asarray(small.x_test), jnp.asarray(small.y_test))
    # eager here, fused in the jitted epoch: equal to rounding
    assert float(metrics[2]) == pytest.approx(float(want[0]), rel=1e-6)
    assert float(metrics[3]) == float(want[1])
    y_loss = demo.loss_and_accuracy(params, jnp.asarray(small.x_test), jnp.asarray(small.y_test))
    assert float(y_loss[0]) != pytest.approx(float(want[0]), rel=1e-4), (y_loss, want)
    assert demo.evaluation_point("adam") is None


@pytest.mark.parametrize("name", demo.available())
def test_every_offered_optimizer_builds_a_well_typed_epoch(name):
    # Traced, not compiled: the update gets the keywords it takes (L-BFGS the loss and
    # its function, Sophia obj_fn, ...) and returns a state of the same structure.
    epoch, params, state = _small_epoch(name)
    new_params, new_state, metrics = jax.eval_shape(epoch, params, state, jax.random.PRNGKey(1))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new_params) == jax.tree.map(
        lambda x: (x.shape, x.dtype), params
    )
    assert metrics.shape == (4,)


def _one_per_signature():
    """The first demo name for each way of calling the update (plain, per-example, with
    the loss, with the loss function, with ``obj_fn``): each compiled path runs once."""
    seen = {}
    for name in demo.available():
        seen.setdefault((demo.takes(name), demo.per_example(name)), name)
    return list(seen.values())


@pytest.mark.parametrize("name", _one_per_signature())
def test_one_optimizer_per_update_signature_trains_an_epoch(name):
    epoch, params, state = _small_epoch(name)
    _, _, metrics = epoch(params, state, jax.random.PRNGKey(1))
    assert np.isfinite(np.asarray(metrics)).all(), metrics


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--optimizers", "adam,sdg"], "unknown optimizer(s) 'sdg'; choose from sgd,"),
        (["--optimizers", ","], "give at least one optimizer"),
        (["--optimizers", "adam,adam"], "names repeat"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--epochs", "ten"], "expected a positive integer, got 'ten'"),
        (["--hidden", "64,x"], "expected comma-separated positive layer widths"),
        (["--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
        (["--seed", "-3"], "argument --seed: expected an integer in [0, 2**32), got '-3'"),
        (["--seed", str(2**32)], "expected an integer in [0, 2**32), got '4294967296'"),
        (["--seed", "1.5"], "expected an integer in [0, 2**32), got '1.5'"),
        (["--out", "/nonexistent/x.png"], "argument --out: folder '/nonexistent' does not exist"),
        (["--out", "{tmp}"], "is a directory; give a file name such as gradtx_digits.png"),
        (["--out", "{tmp}/curves.txt"], "argument --out: matplotlib cannot write .txt files"),
        (["--lr-find", "--lr-steps", "3"], "the range test needs at least 4 steps"),
        (["--lr-find", "--out", "/nonexistent/lr.png"], "folder '/nonexistent' does not exist"),
        (["--lr-find", "--optimizers", "adam,lbfgs"], "the update of lbfgs needs the loss"),
        (["--lr-find", "--optimizers", "dpsgd"], "the update of dpsgd takes per-example"),
    ],
)
def test_bad_options_give_clear_messages(argv, message, capsys, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m gradtx" in err and message in err


def test_out_is_checked_without_leaving_a_file(tmp_path):
    out = tmp_path / "curves.png"
    assert cli.parse_args(["--out", str(out)]).out == str(out)
    assert not out.exists()  # the writability check removes what it created
    out.write_bytes(b"old")
    cli.parse_args(["--out", str(out)])
    assert out.read_bytes() == b"old"  # an existing file is left as it was
    cli.parse_args(["--out", "/nonexistent/x.png", "--no-plot"])  # not written: not checked


def test_bad_out_fails_before_any_training(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gradtx", "--epochs", "1", "--out", str(tmp_path / "no" / "x.png")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "digits:" not in proc.stdout and "Traceback" not in proc.stderr


def test_progress_bar_starts_after_compilation(monkeypatch):
    """The bar's rate and ETA must time the epochs, not XLA's compilation."""
    events = []
    compile_ = demo._compile

    def logged_compile(*args):
        out = compile_(*args)
        events.append("compiled")
        return out

    class Bar:
        def __init__(self, *args, **kwargs):
            events.append("bar")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_postfix(self, **kwargs):
            pass

        def update(self):
            events.append("epoch")

    monkeypatch.setattr(demo, "_compile", logged_compile)
    real_require = demo.require
    monkeypatch.setattr(
        demo,
        "require",
        lambda module, package: (
            type("tqdm", (), {"tqdm": Bar}) if module == "tqdm" else real_require(module, package)
        ),
    )
    result = demo.train("adam", demo.load_digits(0), epochs=2, batch_size=256, hidden=(8,), seed=0)
    assert events == ["compiled", "bar", "epoch", "epoch"]
    assert result.compile_seconds > 0 and result.seconds >= 0


def test_default_output_is_ignored_by_git():
    if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(
        os.path.join(ROOT, ".git")
    ):
        pytest.skip("not a git checkout")
    assert cli.parse_args([]).out == "gradtx_digits.png"  # written to the current folder
    assert cli.parse_args(["--lr-find"]).out == "gradtx_lr_find.png"
    for name in ["gradtx_digits.png", "gradtx_lr_find.png"]:
        proc = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
        assert proc.returncode == 0, f"add the demo's default output {name} to .gitignore"


def test_help_lists_options_and_optimizers(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in ["--optimizers", "--epochs", "--out", "digits", "swats, ranger", "[0, 2**32)",
                 "from a checkout: pip install -e '.[demo]'", "pip install 'gradtx[demo]'",
                 "--lr-find", "--lr-steps", "range test"]:  # fmt: skip
        assert word in text


def test_missing_optional_dependency_names_the_extra():
    with pytest.raises(SystemExit, match=r"needs not-a-pkg.*-e '\.\[demo\]'.*'gradtx\[demo\]'"):
        demo.require("gradtx_no_such_module", "not-a-pkg")
