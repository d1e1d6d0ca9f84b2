"""Which branches of ``torch/optim/lbfgs.py`` a reference run took.

The L-BFGS and line-search comparisons are only as strong as the paths they
drive torch's code through, so their cases are checked to cover every branch
below: ``taken(run)`` runs ``run()`` under ``sys.settrace`` and returns the
(previous line, line) arcs executed in torch's file.  Branches are found by
the text of their lines (torch is pinned in pyproject.toml); a line that
moved away is a ``KeyError`` here, not a silently passing check.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import torch.optim.lbfgs as torch_lbfgs

SOURCE = inspect.getsourcefile(torch_lbfgs)
_LINES = [line.strip() for line in inspect.getsource(torch_lbfgs).splitlines()]


def _line(text: str, nth: int = 0) -> int:
    hits = [i + 1 for i, line in enumerate(_LINES) if line.startswith(text)]
    if len(hits) <= nth:
        raise KeyError(f"torch/optim/lbfgs.py has no line {nth + 1} starting with {text!r}")
    return hits[nth]


def _then(text: str, nth: int = 0) -> tuple[int, int]:
    """The arc from a condition's line into its body (the next line)."""
    return _line(text, nth), _line(text, nth) + 1


# label -> (from line or None for "any", to line)
LINE_SEARCH = {
    "cubic: x1 <= x2": (None, _line("min_pos = x2 - (x2 - x1)")),
    "cubic: x1 > x2": (None, _line("min_pos = x1 - (x1 - x2)")),
    "cubic: no real minimiser": (None, _line("return (xmin_bound + xmax_bound) / 2.0")),
    "bracket: decrease fails": (None, _line("bracket = [t_prev, t]", 0)),
    "bracket: wolfe holds": (None, _line("bracket = [t]")),
    "bracket: slope >= 0": (None, _line("bracket = [t_prev, t]", 1)),
    "bracket: extrapolate": (None, _line("min_step = t + 0.01")),
    "bracket: out of evaluations": (None, _line("bracket = [0, t]")),
    "zoom: bracket too small": _then("if abs(bracket[1] - bracket[0]) * d_norm"),
    "zoom: move off the high end": (None, _line("t = max(bracket) - eps")),
    "zoom: move off the low end": (None, _line("t = min(bracket) + eps")),
    "zoom: insufficient progress": (None, _line("insuf_progress = True")),
    "zoom: replace high": (None, _line("bracket[high_pos] = t")),
    "zoom: wolfe holds": (None, _line("done = True", 1)),
    "zoom: low becomes high": (None, _line("bracket[high_pos] = bracket[low_pos]")),
}
STEP = {
    "optimal at start": (None, _line("return orig_loss", 0)),
    "memory: ring wraps": (None, _line("old_dirs.pop(0)")),
    "memory: pair skipped": (_line("if ys > 1e-10:"), _line("num_old = len(old_dirs)")),
    "stop: no descent": _then("if gtd > -tolerance_change:"),
    "stop: max_iter": _then("if n_iter == max_iter:"),
    "stop: max_eval": _then("if current_evals >= max_eval:"),
    "stop: optimal": _then("if opt_cond:", 1),
    "stop: step too small": _then("if d.mul(t).abs().max() <= tolerance_change:"),
    "stop: loss change too small": _then("if abs(loss - prev_loss) < tolerance_change:"),
    "stop: no evaluation after the last iteration": (
        _line("if n_iter != max_iter:"),
        _line("current_evals += ls_func_evals"),
    ),
}


def taken(run: Callable[[], object]) -> tuple[object, set[tuple[int | None, int]]]:
    """``run()``'s result and the arcs it executed in torch's lbfgs.py."""
    arcs: set[tuple[int | None, int]] = set()
    last: dict[int, int | None] = {}  # frame -> its previous line

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != SOURCE:
            return None
        last[id(frame)] = None

        def step(frame, event, arg):
            if event == "line":
                arcs.add((last.get(id(frame)), frame.f_lineno))
                last[id(frame)] = frame.f_lineno
            return step

        return step

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        out = run()
    finally:
        sys.settrace(previous)
    return out, arcs


def missing(arcs: set, branches: dict) -> list[str]:
    """The labels of ``branches`` that ``arcs`` never took."""
    lines = {b for _, b in arcs}
    return [
        label
        for label, (a, b) in branches.items()
        if (b not in lines if a is None else (a, b) not in arcs)
    ]
