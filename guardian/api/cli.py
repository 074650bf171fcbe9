"""CLI commands of the API area: ``guardian api``, ``quarantines``, ``appeals`` and ``tokens``.

``quarantines`` and ``appeals`` talk to a running API (``--url``/``--token``
or ``GUARDIAN_API__URL``/``GUARDIAN_API__TOKEN``), so they obey the same
authorisation, rate limits and audit as any client. ``tokens`` writes Redis
directly: whoever runs it holds the Redis credentials, which is how the first
admin token comes to exist.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Optional

import typer

quarantines_app = typer.Typer(no_args_is_help=True, help="Review quarantines through the API.")
appeals_app = typer.Typer(no_args_is_help=True, help="File and follow appeals through the API.")
tokens_app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke API tokens (writes Redis directly).")

_URL = typer.Option(None, "--url", help="API base URL [env GUARDIAN_API__URL; default http://<api.host>:<api.port>]")
_TOKEN = typer.Option(None, "--token", help="bearer token [env GUARDIAN_API__TOKEN]")
_JSON = typer.Option(False, "--json", help="print the API's JSON")


def _client(url: str | None, token: str | None) -> Any:
    from guardian.clients.api import GuardianClient
    from guardian.errors import ConfigError
    from guardian.settings import GuardianSettings

    api = GuardianSettings().api
    base = url or api.url or f"http://{api.host}:{api.port}"
    tok = token or api.token.get_secret_value()
    if not tok:
        raise ConfigError("no API token: pass --token or set GUARDIAN_API__TOKEN (issue one with "
                          "`guardian tokens create`)")
    return GuardianClient(base, tok)


def _ts(value: float | None) -> str:
    if not value:
        return "-"
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _until(value: str | None) -> float | None:
    """``until`` as Unix seconds, an ISO time, or a duration from now (``30m``, ``6h``, ``2d``)."""
    if value is None:
        return None
    from guardian.errors import ConfigError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() + float(value[:-1]) * units[value[-1]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--until {value!r}: give Unix seconds, an ISO time or a duration like 6h") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def _line(q: dict[str, Any]) -> str:
    acts = ",".join(a["kind"] for a in q.get("actions", [])) or "-"
    appeal = q.get("appeal") or {}
    return (f"{q['id']}  {q['state']:<17} {acts:<9} {q.get('principal') or '-'}  "
            f"client={q['workload'].get('client_id', '-')}  expires {_ts(q['expires_at'])}"
            + (f"  appeal={appeal['state']}" if appeal else ""))


def _show(q: dict[str, Any]) -> None:
    typer.echo(_line(q))
    typer.echo(f"  policy {q['policy']} rung {q['rung']}, version {q['version']}"
               + (", dry-run" if q.get("dry_run") else ""))
    typer.echo(f"  why: {q['explanation']}")
    for a in q.get("actions", []):
        typer.echo(f"  action {a['kind']} {json.dumps(a['target'])} {json.dumps(a['params'])} -> {a['status']}"
                   + (f" ({a['error']})" if a.get("error") else ""))
    if q.get("appeal"):
        a = q["appeal"]
        typer.echo(f"  appeal {a['id']} {a['state']} by {a['filed_by']}: {json.dumps(a['justification'])}")
    if q.get("probation"):
        typer.echo(f"  probation until {_ts(q['probation'].get('until'))}")
    for h in q.get("history", [])[-10:]:
        typer.echo(f"  {_ts(h['ts'])} {h.get('from') or '-'} -> {h.get('to')} by {h.get('by')}: "
                   f"{json.dumps(h.get('reason', ''))}")


# ---------------------------------------------------------------- quarantines

@quarantines_app.command("list")
def q_list(state: Optional[list[str]] = typer.Option(None, "--state", help="repeat for several"),
           tenant: Optional[str] = typer.Option(None, "--tenant", help="principal, e.g. User:tenant-a"),
           appealed: Optional[bool] = typer.Option(None, "--appealed/--not-appealed"),
           limit: Optional[int] = typer.Option(None, "--limit"),
           as_json: bool = _JSON, url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Quarantines this token may see, newest first."""
    with _client(url, token) as c:
        principal = tenant if tenant is None or ":" in tenant else f"User:{tenant}"
        items = c.quarantines(states=state, principal=principal, appealed=appealed, limit=limit)
    if as_json:
        _echo_json(items)
        return
    for q in items:
        typer.echo(_line(q))
    if not items:
        typer.echo("no quarantines")


@quarantines_app.command("show")
def q_show(qid: str, as_json: bool = _JSON, url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """One quarantine with its evidence, actions, appeal and history."""
    with _client(url, token) as c:
        q = c.quarantine(qid)
    _echo_json(q) if as_json else _show(q)


@quarantines_app.command("release")
def q_release(qid: str, reason: str = typer.Option("", "--reason"), as_json: bool = _JSON,
              url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Revert every action of the quarantine now; probation starts."""
    with _client(url, token) as c:
        q = c.release(qid, reason)
    _echo_json(q) if as_json else typer.echo(_line(q))


@quarantines_app.command("extend")
def q_extend(qid: str, by: str = typer.Option(..., "--by", help="seconds or 30m/6h/2d"),
             reason: str = typer.Option("", "--reason"), as_json: bool = _JSON,
             url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Push the quarantine's expiry back."""
    seconds = (_until(by) or 0) - time.time() if not by.replace(".", "", 1).isdigit() else float(by)
    with _client(url, token) as c:
        q = c.extend(qid, round(seconds, 3), reason)
    _echo_json(q) if as_json else typer.echo(_line(q))


@quarantines_app.command("approve")
def q_approve(qid: str, reason: str = typer.Option("", "--reason"),
              raised_limit: Optional[float] = typer.Option(None, "--raised-limit",
                                                           help="relax the throttle to this instead of releasing"),
              until: Optional[str] = typer.Option(None, "--until", help="with --raised-limit: Unix s, ISO or 6h"),
              as_json: bool = _JSON, url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Grant the pending appeal, or let an action awaiting approval act."""
    with _client(url, token) as c:
        q = c.approve(qid, reason, raised_limit, _until(until))
    _echo_json(q) if as_json else typer.echo(_line(q))


@quarantines_app.command("deny")
def q_deny(qid: str, reason: str = typer.Option(..., "--reason"), as_json: bool = _JSON,
           url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Deny the pending appeal (the action stays) or reject an action awaiting approval."""
    with _client(url, token) as c:
        q = c.deny(qid, reason)
    _echo_json(q) if as_json else typer.echo(_line(q))


# ---------------------------------------------------------------- appeals

def _appeal_line(a: dict[str, Any]) -> str:
    extra = f" requested {a['requested_limit']:g}" if a.get("requested_limit") else ""
    extra += f" until {_ts(a['until'])}" if a.get("until") else ""
    return f"{a['id']}  {a['state']:<8} by {a['filed_by']} at {_ts(a['filed_at'])}{extra}: {json.dumps(a['justification'])}"


@appeals_app.command("list")
def a_list(state: Optional[str] = typer.Option(None, "--state", help="pending, granted, denied or lapsed"),
           limit: Optional[int] = typer.Option(None, "--limit"), as_json: bool = _JSON,
           url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Appeals this token may see, newest first."""
    with _client(url, token) as c:
        items = c.appeals(state, limit)
    if as_json:
        _echo_json(items)
        return
    for a in items:
        typer.echo(_appeal_line(a))
    if not items:
        typer.echo("no appeals")


@appeals_app.command("file")
def a_file(qid: str, justification: str = typer.Option(..., "--justification", "-j"),
           requested_limit: Optional[float] = typer.Option(None, "--requested-limit"),
           until: Optional[str] = typer.Option(None, "--until", help="Unix s, ISO time or a duration like 6h"),
           as_json: bool = _JSON, url: Optional[str] = _URL, token: Optional[str] = _TOKEN) -> None:
    """Appeal a quarantine of one of your principals."""
    with _client(url, token) as c:
        a = c.appeal(qid, justification, requested_limit, _until(until))
    _echo_json(a) if as_json else typer.echo(_appeal_line(a))


@appeals_app.command("show")
def a_show(appeal_id: str, as_json: bool = _JSON, url: Optional[str] = _URL,
           token: Optional[str] = _TOKEN) -> None:
    """Follow one appeal."""
    with _client(url, token) as c:
        a = c.appeal_of(appeal_id)
    if as_json:
        _echo_json(a)
        return
    typer.echo(_appeal_line(a))
    if a.get("decided_by"):
        typer.echo(f"  decided by {a['decided_by']} at {_ts(a.get('decided_at'))}: {json.dumps(a.get('decision_note') or '')}")
    if a.get("raised_limit"):
        typer.echo(f"  raised limit {a['raised_limit']:g} until {_ts(a.get('raised_until'))}")


# ---------------------------------------------------------------- tokens

def _store() -> Any:
    import redis

    from guardian.settings import redis_url_for
    from guardian.api.auth import TokenStore
    from guardian.settings import GuardianSettings

    settings = GuardianSettings()
    return TokenStore(redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5),
                      settings.redis.prefix)


@tokens_app.command("create")
def t_create(role: str = typer.Option(..., "--role", help="tenant, sre, agent or admin"),
             tenant: Optional[list[str]] = typer.Option(None, "--tenant",
                                                        help="principal the token is scoped to (repeatable); "
                                                             "required for tenant, optional for agent"),
             name: str = typer.Option("", "--name", help="who holds it (recorded as `by` in the ledger)")) -> None:
    """Issue a token and print it (once: only its hash is stored)."""
    import getpass

    from guardian.api.auth import Role
    from guardian.errors import ConfigError

    try:
        r = Role(role)
    except ValueError:
        raise ConfigError(f"--role must be one of {', '.join(x.value for x in Role)}") from None
    token, info = _store().create(r, tenant or (), name=name, created_by=f"cli:{getpass.getuser()}",
                                  now=time.time())
    typer.echo(f"token {info.id}: role {info.role.value}"
               + (f", principals {', '.join(info.principals)}" if info.principals else ""), err=True)
    typer.echo(token)


@tokens_app.command("revoke")
def t_revoke(token_id: str) -> None:
    """Revoke a token by id; its next request fails."""
    from guardian.errors import NotFoundError

    if not _store().revoke(token_id):
        raise NotFoundError(f"no token {token_id}")
    typer.echo(f"revoked {token_id}")


@tokens_app.command("list")
def t_list(as_json: bool = _JSON) -> None:
    """The tokens (ids, roles, scopes; never the secrets)."""
    infos = _store().list()
    if as_json:
        _echo_json([i.to_dict() for i in infos])
        return
    for i in infos:
        typer.echo(f"{i.id}  {i.role.value:<6} {','.join(i.principals) or '*':<24} {i.name or '-':<16} "
                   f"created {_ts(i.created_at)} by {i.created_by or '-'}")
    if not infos:
        typer.echo("no tokens")


# ---------------------------------------------------------------- server

def api(host: Optional[str] = typer.Option(None, "--host", help="[env GUARDIAN_API__HOST]"),
        port: Optional[int] = typer.Option(None, "--port", help="[env GUARDIAN_API__PORT]")) -> None:
    """Serve the HTTP API (OpenAPI at /v1/openapi.json, docs at /v1/docs)."""
    import uvicorn

    from guardian.api.app import create_app
    from guardian.settings import GuardianSettings

    settings = GuardianSettings()
    app = create_app(settings)
    uvicorn.run(app, host=host or settings.api.host, port=port if port is not None else settings.api.port,
                log_level="info", proxy_headers=True)
