"""``guardian mcp``: serve the MCP tools over stdio (one agent, token from the environment) or streamable HTTP."""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import typer

TOKEN_ENV = "GUARDIAN_MCP_TOKEN"


def mcp_command(
    transport: str = typer.Option("stdio", "--transport", help="stdio (token in $GUARDIAN_MCP_TOKEN) or http "
                                  "(streamable HTTP; each request's `Authorization: Bearer` token)."),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP: the address to listen on."),
    port: int = typer.Option(8090, "--port", min=0, max=65535, help="HTTP: the port to listen on."),
    path: str = typer.Option("/mcp", "--path", help="HTTP: the MCP endpoint path."),
) -> None:
    """Serve the Model Context Protocol for agents, with the API's tokens, authorisation, rate limits and audit."""
    from guardian.errors import ConfigError
    from guardian.mcp.core import McpCore
    from guardian.settings import GuardianSettings

    if transport not in ("stdio", "http"):
        raise ConfigError(f"--transport must be stdio or http, not {transport!r}")
    # stdout belongs to the protocol on stdio: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = GuardianSettings()
    core = McpCore.build(settings)
    kind: Literal["stdio", "http"] = "stdio" if transport == "stdio" else "http"
    if kind == "stdio":
        token = os.environ.get(TOKEN_ENV, "").strip() or None
        who = core.authenticate(token)   # fail at start, not at the first call; every call checks again
        logging.getLogger(__name__).warning("guardian MCP on stdio as %s", who.label)
        run_stdio(core, token)
    else:
        run_http(core, host, port, path)


def run_stdio(core: object, token: str | None) -> None:
    import anyio

    from guardian.mcp.server import create_server

    server = create_server(core, "stdio", token)  # type: ignore[arg-type]
    anyio.run(server.run_stdio_async)


def run_http(core: object, host: str, port: int, path: str = "/mcp") -> None:
    import uvicorn

    from guardian.mcp.server import http_app

    app = http_app(core, host=host, path=path)  # type: ignore[arg-type]
    typer.echo(f"guardian MCP (streamable HTTP) on http://{host}:{port}{path}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
