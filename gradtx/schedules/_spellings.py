"""torch's keywords for a schedule, named when a call uses them.

A torch user writes ``cosine_decay(..., eta_min=1e-3)``; Python's own error says
only that ``cosine_decay()`` takes no ``eta_min``.  ``torch_names`` makes a
schedule function's keyword errors name the call (``gradtx.schedules.<name>``)
and, for a torch keyword, say how gradtx spells it (docs/porting_from_pytorch.md
has the whole table).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec
from typing import TypeVar

P = ParamSpec("P")
R = TypeVar("R")


_EVERY = {  # keywords every torch scheduler takes
    "last_epoch": "none: a gradtx schedule is a function of the optimizer's step count "
    "(continue a torch run with gradtx.from_torch_state_dict)",
    "verbose": "none: read the rate with gradtx.get_hyperparams",
}


def torch_names(**spelled: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a schedule function: ``spelled`` maps torch's keyword to gradtx's way."""
    spelled = {**_EVERY, **spelled}

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        call = f"gradtx.schedules.{fn.__name__}"

        @functools.wraps(fn)
        def named(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as err:
                theirs = [k for k in kwargs if k in spelled and k not in signature.parameters]
                hint = f" (torch's {theirs[0]}=: {spelled[theirs[0]]})" if theirs else ""
                raise TypeError(f"{call}: {err}{hint}") from None
            return fn(*args, **kwargs)

        return named

    return decorate
