"""PivotRL's own steps: offline profiling of candidate turns with the frozen policy
(:mod:`~pivotgym.pivotrl.profiling`) and the pivot filter (:mod:`~pivotgym.pivotrl.pivots`)."""
