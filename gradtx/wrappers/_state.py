"""Update-time state checks shared by the wrappers that are not built by ``factory``.

They refuse a state made by another optimizer, or for other params, as the
factories' ``update`` does (``gradtx._factory.hyperparameterized``), before the
wrapper reads a field the state may not have.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import jax

from gradtx import _checks

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("gradtx_probing", default=False)


@contextlib.contextmanager
def probing() -> Iterator[None]:
    """While a wrapper traces ``init`` only to learn the state's layout."""
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


def is_probing() -> bool:
    """True inside ``probing()``: an ``init`` should not record the tree it sees as the
    user's (an outer wrapper's probe with wrong updates would teach it their layout)."""
    return _PROBING.get()


class StateCheck:
    """``record(params)`` in ``init``; ``check(state, updates, params)`` in ``update``.

    Leaf counts of the trees ``init`` saw are kept, as the factories keep them:
    a state without params-shaped buffers cannot show that the updates' tree
    changed, and probing the inner transform's ``init`` here would teach it
    the wrong tree, so this wrapper compares them first.
    """

    def __init__(self, call: str, init: Callable[[Any], Any]) -> None:
        self.call, self.init = call, init
        self.seen: set[int] = set()

    def record(self, params: Any) -> None:
        n = len(jax.tree.leaves(params))
        if n and not is_probing():  # leafless: optax's tree_map_params inits with one
            self.seen.add(n)

    def check(self, state: Any, updates: Any, params: Any = None) -> None:
        n = len(jax.tree.leaves(updates))
        if self.seen and n not in self.seen:
            raise ValueError(
                f"{self.call}.update: the updates' tree does not match the tree the state was "
                f"initialised with: {n} leaves, init saw {sorted(self.seen)}.\n"
                f"  updates: {jax.tree.structure(updates)}"
            )
        with probing():
            expected = jax.eval_shape(self.init, updates if params is None else params)
        _checks.check_bare_state(self.call, state, expected)
