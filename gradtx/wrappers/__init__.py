"""Wrappers around transforms: parameter groups, finiteness, accumulation, monitors, flat buffers."""
