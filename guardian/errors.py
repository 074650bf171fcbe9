"""The one error tree of the guardian.

Client-library errors (confluent-kafka, kafka-python, redis, kubernetes) are
converted into these at the edge where they occur. The branch decides what a
caller does: a ``TemporaryError`` may be retried after ``delay`` seconds, a
``PermanentError`` will fail the same way again.
"""

from __future__ import annotations


class GuardianError(Exception):
    """Base of every error the guardian raises on purpose."""


class TemporaryError(GuardianError):
    """Retrying later may succeed (broker unavailable, lease held, timeout)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(GuardianError):
    """Retrying will not help (bad config, authorization refused, bad input)."""


class ConfigError(PermanentError):
    """A settings value or a policy file is invalid."""


class SetupError(PermanentError):
    """A prerequisite is missing (JDK, Maven, redis-server, Go) or a local service failed to start."""


class DecodeError(PermanentError):
    """A record could not be decoded into samples; it goes to the dead-letter topic."""


class SnapshotError(PermanentError):
    """Saved detector state that cannot be restored (corrupt, another format version, another detector
    configuration); the partition starts cold instead."""


class ConflictError(PermanentError):
    """Someone else changed the record first (optimistic concurrency), or the change is not allowed in its state."""


class NotLeaderError(TemporaryError):
    """This engine does not hold the action lease (another replica acts)."""


class NotFoundError(PermanentError):
    """No such record, or one the caller may not learn of (the API answers 404 for both)."""


class AuthenticationError(PermanentError):
    """No credentials, or credentials that are unknown, malformed or revoked."""


class AuthorizationError(PermanentError):
    """The caller is known but its role may not do this."""


class RateLimitedError(TemporaryError):
    """The caller spent its request budget; ``delay`` says when a request will pass again."""
