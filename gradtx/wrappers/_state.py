"""The update-time state check shared by the wrappers that are not built by ``factory``.

It refuses a state made by another optimizer, or for other params, as the
factories' ``update`` does (``gradtx._hyperparameterized.hyperparameterized``), before the
wrapper reads a field the state may not have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradtx import _state_checks
from gradtx import _update_checks


class StateCheck:
    """``record(params)`` in ``init``; ``check(state, updates, params)`` in ``update``.

    The leaf counts catch a changed tree that a state without params-shaped
    buffers cannot show, and they are compared first, for the clearer message.
    """

    def __init__(self, call: str, init: Callable[[Any], Any]) -> None:
        self.call, self.init = call, init
        self.counts = _update_checks.LeafCounts(call)

    def record(self, params: Any) -> None:
        self.counts.record(params)

    def check(self, state: Any, updates: Any, params: Any = None) -> Any:
        """Refuse a state ``init`` would not make for these updates; return it with its
        leaves of another kind taken back (``_state_checks.restore_kinds``)."""
        self.counts.check(updates)
        expected = _update_checks.probe_init(self.init, updates if params is None else params)
        return _state_checks.check_bare_state(
            self.call, state, expected, from_updates=params is None
        )
