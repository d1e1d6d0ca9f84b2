"""``python -m gradtx``: the command line of the digits demo (``gradtx.demo``).

It parses and checks the options before any training (a bad ``--out`` or an
unknown optimizer fails at once), then trains each optimizer, or runs the
learning-rate range test with ``--lr-find``, and prints and plots the results.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Sequence
from typing import Any

import jax

from gradtx import demo

DEFAULT_OPTIMIZERS = ("sgd-momentum", "adam", "adamw", "radam", "adabound", "swats", "ranger")
DEFAULT_OUT = "gradtx_digits.png"  # in the current directory; .gitignore lists both
DEFAULT_LR_OUT = "gradtx_lr_find.png"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return value


def _check_writable(path: str) -> str | None:
    """Why ``path`` cannot be written, or None.  Opens it for appending (and removes it
    if it did not exist), which is the test that also holds for root and read-only disks."""
    if os.path.isdir(path):
        return f"{path!r} is a directory; give a file name such as {DEFAULT_OUT}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder!r} does not exist"
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    demo.require("matplotlib", "matplotlib")
    formats = importlib.import_module("matplotlib.backend_bases").FigureCanvasBase
    if extension and extension not in formats.get_supported_filetypes():
        return f"matplotlib cannot write .{extension} files; use one of " + ", ".join(
            sorted(formats.get_supported_filetypes())
        )
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        return f"cannot write {path!r}: {exc.strerror}"
    if not existed:
        os.remove(path)
    return None


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(_positive_int(t) for t in text.split(",") if t.strip())
    except argparse.ArgumentTypeError:
        sizes = ()
    if not sizes:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths like 64 or 128,64, got {text!r}"
        )
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradtx",
        description=(
            "Train a small MLP on scikit-learn's bundled 8x8 digits (1797 images, no download) "
            "with several gradtx optimizers from the same initial weights and data order; print "
            "a table of final train/test loss and accuracy and wall time, and save a PNG of the "
            f"training curves.  Needs the demo extra, {demo.INSTALL_HINT}."
        ),
        epilog="available optimizers: "
        + ", ".join(demo.available())
        + " (after muon: each optimizer's own defaults; lr=1e-3 where it has none)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help="comma-separated optimizer names (see the list below)",
    )
    parser.add_argument("--epochs", type=_positive_int, default=40, help="training epochs")
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size")
    parser.add_argument(
        "--hidden", type=_hidden, default="64", help="hidden layer widths, e.g. 128,64"
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed for weights, split and shuffles, in [0, 2**32)"
    )
    parser.add_argument(
        "--out",
        # "%(default).0s" prints nothing, and stops the formatter appending "(default: None)"
        help=f"where to write the PNG of training curves (default: {DEFAULT_OUT}; with "
        f"--lr-find: {DEFAULT_LR_OUT})%(default).0s",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--lr-find",
        action="store_true",
        help="instead of training, run the learning-rate range test (gradtx.lr_range_test, "
        f"Smith 2017) for each optimizer from {demo.LR_FIND_RUNS} initial weights: print the "
        "suggested learning rate and the (base, max) bounds for one_cycle/cyclical, and plot "
        "loss against learning rate (--epochs is not used)",
    )
    parser.add_argument(
        "--lr-steps", type=_positive_int, default=100, help="steps of the range test"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    choices = demo.available()
    unknown = [n for n in names if n not in choices]
    if unknown:
        parser.error(
            f"unknown optimizer(s) {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
        )
    if not names:
        parser.error("--optimizers: give at least one optimizer name")
    if len(set(names)) != len(names):
        parser.error(f"--optimizers: names repeat: {', '.join(names)}")
    args.optimizers = names
    if args.lr_find:
        need_loss = [n for n in names if demo.takes(n)]
        if need_loss:
            parser.error(
                f"--lr-find: the update of {', '.join(need_loss)} needs the loss itself; the "
                "range test drives optimizers that take the gradient only"
            )
        per_example = [n for n in names if demo.per_example(n)]
        if per_example:
            parser.error(
                f"--lr-find: the update of {', '.join(per_example)} takes per-example "
                "gradients; the range test drives optimizers that take the batch gradient"
            )
    if args.lr_steps < 4:
        parser.error("argument --lr-steps: the range test needs at least 4 steps")
    if args.out is None:
        args.out = DEFAULT_LR_OUT if args.lr_find else DEFAULT_OUT
    if not args.no_plot:
        problem = _check_writable(args.out)  # now, not after all the training
        if problem:
            parser.error(f"argument --out: {problem}")
    return args


def main(argv: Sequence[str] | None = None) -> list[demo.Result] | dict[str, Any]:
    args = parse_args(argv)
    for module, package in [("sklearn", "scikit-learn"), ("tqdm", "tqdm")] + (
        [] if args.no_plot else [("matplotlib", "matplotlib")]
    ):
        demo.require(module, package)  # fail before any training, not after
    data = demo.load_digits(args.seed)
    batch_size = min(args.batch_size, len(data.x_train))
    if args.lr_find:
        return _main_lr_find(args, data, batch_size)
    print(
        f"digits: {len(data.x_train)} train / {len(data.x_test)} test images, MLP "
        f"64-{'-'.join(map(str, args.hidden))}-10, {args.epochs} epochs, batch {batch_size}, "
        f"JAX on {jax.devices()[0].platform}"
    )
    results = [
        demo.train(
            name,
            data,
            epochs=args.epochs,
            batch_size=batch_size,
            hidden=args.hidden,
            seed=args.seed,
            progress=not args.no_progress,
        )
        for name in args.optimizers
    ]
    print()
    print(demo.format_table(results))
    if not args.no_plot:
        demo.plot(results, args.out, f"MLP on digits, {args.epochs} epochs, seed {args.seed}")
        print(f"\ntraining curves written to {args.out}")
    return results


def _main_lr_find(args: argparse.Namespace, data: demo.Data, batch_size: int) -> dict[str, Any]:
    print(
        f"learning-rate range test on digits: MLP 64-{'-'.join(map(str, args.hidden))}-10, "
        f"{args.lr_steps} steps of batch {batch_size}, learning rate 1e-07 to 10 "
        f"(exponential), {demo.LR_FIND_RUNS} initial weights per optimizer, JAX on "
        f"{jax.devices()[0].platform}"
    )
    start = time.perf_counter()
    results = demo.lr_find(
        args.optimizers,
        data,
        batch_size=batch_size,
        hidden=args.hidden,
        seed=args.seed,
        num_steps=args.lr_steps,
    )
    print()
    print(demo.format_lr_table(results))
    print(
        f"\n{time.perf_counter() - start:.1f}s.  suggested: where the smoothed loss falls "
        "fastest; base/max: where it has made 10%/90% of its descent (use them for "
        "gradtx.schedules.one_cycle or cyclical).  demo's lr: what the training demo uses."
    )
    if not args.no_plot:
        demo.plot_lr(
            results, args.out, f"learning-rate range test, MLP on digits, seed {args.seed}"
        )
        print(f"\nloss against learning rate written to {args.out}")
    return results


if __name__ == "__main__":
    main()
