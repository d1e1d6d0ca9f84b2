"""Named optimizers: short chains of the primitives."""
