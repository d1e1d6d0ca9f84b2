"""Primitive gradient transformations, one family per module."""
