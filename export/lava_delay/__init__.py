"""A delay line for Lava: the source's values ``delay`` steps later (process + models)."""
