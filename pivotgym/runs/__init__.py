"""Whole runs: the configuration, the methods (PivotRL, E2E RL, SFT) on one cost ledger,
evaluation, and the bench that compares them. It imports every layer of the library and
reaches environments only through the core's registry."""
