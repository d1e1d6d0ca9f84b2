"""``python -m gradtx._registry``: print or rewrite the registry's Markdown (see ``main``).

A ``__main__`` module of its own, so running it does not load a second copy of the
registry that importing gradtx already filled.
"""

from gradtx._registry import main

raise SystemExit(main())
