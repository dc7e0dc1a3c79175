"""The bundled terminal task suite: seeded task families with expert demonstrations."""

from .families import FAMILIES, HELD_OUT_FAMILIES
from .plan import ExpertTurn, Family, TaskPlan

__all__ = ["FAMILIES", "HELD_OUT_FAMILIES", "ExpertTurn", "Family", "TaskPlan"]
