"""Wrappers that change how a transform runs (flat buffers, masks, groups, ...)."""
