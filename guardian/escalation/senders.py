"""Escalation channels and the bounded retry loop.

Each channel turns an :class:`~guardian.escalation.summary.Escalation` into one HTTP
request (pure: ``request(esc, now)``), so payloads are testable without a
network; :class:`HttpSender` posts it with httpx; :func:`deliver` retries
with exponential backoff and jitter, a bounded number of times, with the
clock, sleep and randomness injected.

Channels:

* :class:`SlackChannel`: a Slack incoming webhook (the URL is the secret);
* :class:`SignedWebhookChannel`: the JSON record, signed with HMAC-SHA256 over
  ``"<timestamp>.<body>"`` (``X-Guardian-Timestamp``, ``X-Guardian-Signature: v1=<hex>``);
  receivers check it with :func:`verify_signature`;
* :class:`PagerDutyChannel`: PagerDuty Events API v2, ``trigger`` while a
  quarantine holds and ``resolve`` when it ends, ``dedup_key`` = quarantine id;
* :class:`AgentChannel`: the JSON record with a bearer token, for an agent.

:func:`channels_from_settings` builds the channels ``GUARDIAN_ESCALATION__*``
configures; what is wrong there is a ``ConfigError`` naming the variable.

Retried: transport errors, 408, 429 and 5xx (honouring ``Retry-After`` up
to the policy's cap). Not retried: other 4xx (the request itself is wrong).
URLs, tokens and keys never appear in errors or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from guardian.errors import ConfigError
from guardian.escalation.summary import Escalation

if TYPE_CHECKING:
    from guardian.settings import EscalationSettings

USER_AGENT = "kafka-workload-guardian-escalation/1"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "X-Guardian-Signature"
TIMESTAMP_HEADER = "X-Guardian-Timestamp"
EVENT_HEADER = "X-Guardian-Event"
DELIVERY_HEADER = "X-Guardian-Delivery"
SLACK_TEXT_LIMIT = 3000          # a section block's text limit
PAGERDUTY_SUMMARY_LIMIT = 1024   # Events v2 payload.summary limit


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes


# ------------------------------------------------------------------------------------ signing


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "v1=" + hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, timestamp: str, signature: str, now: float,
                     tolerance_s: float = 300.0) -> bool:
    """What a receiver does: constant-time compare, and reject stale timestamps (replays)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature or "")


# ------------------------------------------------------------------------------------ channels


class Channel(ABC):
    """One destination. ``events``: only these escalation events go here (``None`` = all)."""

    name: ClassVar[str]

    def __init__(self, events: Iterable[str] | None = None) -> None:
        self.events = frozenset(events) if events is not None else None

    def accepts(self, esc: Escalation) -> bool:
        if esc.channels is not None and self.name not in esc.channels:
            return False
        return self.events is None or esc.record["event"] in self.events

    @abstractmethod
    def request(self, esc: Escalation, now: float) -> HttpRequest:
        """The HTTP request for ``esc`` sent at ``now``. Pure."""

    def _headers(self, esc: Escalation) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                EVENT_HEADER: esc.record["event"], DELIVERY_HEADER: esc.delivery_id}


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities, so ``<!channel>`` in data pings nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(Channel):
    """Slack incoming webhook: headline as the notification text, the summary as plain text."""

    name = "slack"

    def __init__(self, webhook_url: str, events: Iterable[str] | None = None) -> None:
        super().__init__(events)
        self.webhook_url = webhook_url

    def request(self, esc: Escalation, now: float) -> HttpRequest:
        text = slack_escape(esc.text)
        if len(text) > SLACK_TEXT_LIMIT:
            text = text[:SLACK_TEXT_LIMIT - 3] + "..."
        body = {"text": slack_escape(esc.headline),
                "blocks": [{"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}}],
                "unfurl_links": False, "unfurl_media": False}
        return HttpRequest(self.webhook_url, {"Content-Type": "application/json", "User-Agent": USER_AGENT},
                           _json(body))


class SignedWebhookChannel(Channel):
    """The JSON record, HMAC-SHA256-signed with a shared secret and a timestamp (re-signed per attempt)."""

    name = "webhook"

    def __init__(self, url: str, secret: str | bytes, events: Iterable[str] | None = None) -> None:
        super().__init__(events)
        if not secret:
            raise ConfigError("a signed webhook needs a non-empty secret")
        self.url, self._secret = url, secret

    def request(self, esc: Escalation, now: float) -> HttpRequest:
        body, ts = _json(esc.record), int(now)
        headers = self._headers(esc)
        headers.update({TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(self._secret, ts, body)})
        return HttpRequest(self.url, headers, body)


PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDutyChannel(Channel):
    """PagerDuty Events API v2: one alert per quarantine (``dedup_key`` = quarantine id)."""

    name = "pagerduty"

    def __init__(self, routing_key: str, url: str = PAGERDUTY_EVENTS_URL, source: str = "kafka-workload-guardian",
                 events: Iterable[str] | None = None) -> None:
        super().__init__(events)
        if not routing_key:
            raise ConfigError("PagerDuty needs a routing (integration) key")
        self.url, self._routing_key, self.source = url, routing_key, source

    def request(self, esc: Escalation, now: float) -> HttpRequest:
        rec = esc.record
        if esc.resolves:
            body: dict[str, Any] = {"routing_key": self._routing_key, "event_action": "resolve",
                                    "dedup_key": esc.dedup_key}
        else:
            det = rec.get("detection") or {}
            summary = esc.headline
            if len(summary) > PAGERDUTY_SUMMARY_LIMIT:
                summary = summary[:PAGERDUTY_SUMMARY_LIMIT - 3] + "..."
            payload = {"summary": summary, "source": self.source,
                       "severity": PAGERDUTY_SEVERITY.get(str(det.get("severity")), "warning"),
                       "timestamp": rec["time"], "component": str(rec["workload"].get("principal", "")),
                       "group": str(rec["quarantine"].get("policy") or ""),
                       "class": str(det.get("signature") or rec["event"]),
                       "custom_details": {"summary": esc.text, "record": rec}}
            body = {"routing_key": self._routing_key, "event_action": "trigger", "dedup_key": esc.dedup_key,
                    "payload": payload, "client": "kafka-workload-guardian",
                    "links": [{"href": href, "text": key} for key, href in sorted(rec["links"].items())]}
            if rec["links"].get("quarantine"):
                body["client_url"] = rec["links"]["quarantine"]
        return HttpRequest(self.url, {"Content-Type": "application/json", "User-Agent": USER_AGENT}, _json(body))


class AgentChannel(Channel):
    """The JSON record to an agent endpoint, authenticated with a bearer token."""

    name = "agent"

    def __init__(self, url: str, token: str, events: Iterable[str] | None = None) -> None:
        super().__init__(events)
        if not token:
            raise ConfigError("an agent endpoint needs a bearer token")
        self.url, self._token = url, token

    def request(self, esc: Escalation, now: float) -> HttpRequest:
        headers = self._headers(esc)
        headers["Authorization"] = f"Bearer {self._token}"
        return HttpRequest(self.url, headers, _json(esc.record))


_ENV = "GUARDIAN_ESCALATION__"


def _http_url(key: str, value: str) -> str:
    # never echo the value: a Slack webhook URL is the credential
    if not re.match(r"https?://[^/\s]+", value):
        raise ConfigError(f"{_ENV}{key.upper()} must be an http:// or https:// URL")
    return value


def _needs(key: str, value: str, because: str, why: str) -> str:
    if not value:
        raise ConfigError(f"{_ENV}{because.upper()} is set but {_ENV}{key.upper()} is empty: {why}")
    return value


def channels_from_settings(e: "EscalationSettings") -> list[Channel]:
    """The channels ``e`` configures (none is required); a ``ConfigError`` names the setting at fault."""
    channels: list[Channel] = []
    slack = e.slack_webhook_url.get_secret_value()
    if slack:
        channels.append(SlackChannel(_http_url("slack_webhook_url", slack)))
    secret = e.webhook_secret.get_secret_value()
    if e.webhook_url:
        channels.append(SignedWebhookChannel(
            _http_url("webhook_url", e.webhook_url),
            _needs("webhook_secret", secret, "webhook_url", "a signed webhook needs the shared secret")))
    key = e.pagerduty_routing_key.get_secret_value()
    if e.pagerduty_url:
        _needs("pagerduty_routing_key", key, "pagerduty_url", "PagerDuty needs a routing (integration) key")
    if key:
        kw = {"url": _http_url("pagerduty_url", e.pagerduty_url)} if e.pagerduty_url else {}
        channels.append(PagerDutyChannel(key, **kw))
    token = e.agent_token.get_secret_value()
    if e.agent_url:
        channels.append(AgentChannel(
            _http_url("agent_url", e.agent_url),
            _needs("agent_token", token, "agent_url", "an agent endpoint needs a bearer token")))
    return channels


# ------------------------------------------------------------------------------------ retry


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with "equal jitter": delay n is in [cap/2, cap], cap = base * mult^(n-1)."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    timeout_s: float = 5.0          # per HTTP attempt

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay_s < 0 or self.multiplier < 1 or self.max_delay_s < 0:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, failures: int, rng: random.Random) -> float:
        cap = min(self.max_delay_s, self.base_delay_s * self.multiplier ** (failures - 1))
        return cap / 2 + rng.uniform(0, cap / 2)


@dataclass(frozen=True)
class Attempt:
    """One try: an HTTP status, or ``status=None`` with the transport error."""

    status: int | None
    retry_after_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in (408, 429) or self.status >= 500


@dataclass
class Delivery:
    ok: bool
    attempts: int
    last: Attempt | None
    delays: list[float] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.ok or self.last is None:
            return "ok" if self.ok else "not attempted"
        return self.last.error or f"HTTP {self.last.status}"


def deliver(send_once: Callable[[], Attempt], policy: RetryPolicy, sleep: Callable[[float], None],
            rng: random.Random, stopping: Callable[[], bool] = lambda: False) -> Delivery:
    """Call ``send_once`` until it succeeds, fails for good, runs out of attempts or ``stopping()``."""
    result = Delivery(ok=False, attempts=0, last=None)
    while result.attempts < policy.max_attempts:
        attempt = send_once()
        result.attempts += 1
        result.last = attempt
        if attempt.ok:
            result.ok = True
            return result
        if not attempt.retryable or result.attempts >= policy.max_attempts or stopping():
            return result
        wait = policy.delay(result.attempts, rng)
        if attempt.retry_after_s is not None:
            wait = max(wait, min(attempt.retry_after_s, policy.max_delay_s))
        result.delays.append(wait)
        sleep(wait)
        if stopping():
            return result
    return result


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


_URLISH = re.compile(r"https?://\S+")


class HttpSender:
    """Posts a channel's requests with one httpx client (one per worker thread)."""

    def __init__(self, client: Any | None = None, timeout_s: float = 5.0) -> None:
        import httpx

        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def send(self, req: HttpRequest) -> Attempt:
        import httpx

        try:
            resp = self._client.post(req.url, content=req.body, headers=req.headers)
        except httpx.HTTPError as exc:
            # Never echo the URL: for Slack it is the credential.
            return Attempt(None, error=f"{type(exc).__name__}: {_URLISH.sub('<url>', str(exc))}"[:300])
        return Attempt(resp.status_code, retry_after_s=_retry_after(resp.headers.get("Retry-After")),
                       error=None if resp.is_success else f"HTTP {resp.status_code}")
