"""The agent interface: an MCP server over the API's tokens, authorisation, rate limits and audit.

``from guardian.mcp import create_server, McpCore``; nothing happens at import time.

* ``envelope`` - the versioned answer shape; tenant text is data inside ``data``;
* ``runbooks`` - a short runbook per detection signature (MCP resources);
* ``core``     - authenticate, rate limit, authorise, act, audit (no protocol);
* ``server``   - the MCP tools and resources (official ``mcp`` SDK), stdio and streamable HTTP;
* ``cli``      - ``guardian mcp``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["McpCore", "create_server", "http_app"]


def __getattr__(name: str) -> Any:
    if name == "McpCore":
        from guardian.mcp.core import McpCore

        return McpCore
    if name in ("create_server", "http_app"):
        from guardian.mcp import server

        return getattr(server, name)
    raise AttributeError(name)
