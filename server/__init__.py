"""HTTP services of pivotgym (sampling server and environment gateway)."""
