"""pivotgym's built-in environments (each registers like a third-party plugin would)."""
