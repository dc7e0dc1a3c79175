"""The methods a run can be, by name (``pivotgym run`` / ``e2e`` / ``sft``, and the
bench's arms)."""

from pivotgym.runs.e2e import E2E
from pivotgym.runs.pivotrl import PivotRL
from pivotgym.runs.sft import SFT

METHODS = {"pivotrl": PivotRL, "e2e": E2E, "sft": SFT}
