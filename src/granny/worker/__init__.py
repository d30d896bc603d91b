"""The worker: one daemon per host, its zygote, and the granule processes forked from it."""
