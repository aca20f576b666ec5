"""A faster process model for Lava's own ``Conv`` process (kernel + models)."""
