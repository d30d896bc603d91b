"""The planner: one control-plane process that tracks hosts, places granules and keeps results."""
