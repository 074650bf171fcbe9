"""A short runbook per detection signature, served as MCP resources ``guardian://runbooks/<signature>``.

Pure data. Every :class:`guardian.model.detection.Signature` has one (a unit test
keeps it so); ``meaning`` is the one sentence ``explain_detection`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardian.model.detection import Signature


@dataclass(frozen=True)
class Runbook:
    signature: Signature
    title: str
    meaning: str                 # one plain sentence: what the pattern is
    causes: tuple[str, ...]
    checks: tuple[str, ...]
    resolve: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"guardian://runbooks/{self.signature.value}"

    def markdown(self) -> str:
        def items(xs: tuple[str, ...]) -> str:
            return "\n".join(f"- {x}" for x in xs)

        return (f"# Runbook: {self.title} (`{self.signature.value}`)\n\n{self.meaning}\n\n"
                f"## Usual causes\n{items(self.causes)}\n\n## Check\n{items(self.checks)}\n\n"
                f"## Resolve\n{items(self.resolve)}\n\n## With the MCP tools\n{items(_TOOLS)}\n")


_TOOLS = (
    "`get_quarantine` (evidence, actions, history) and `explain_detection` (the same in plain words);",
    "`add_comment` to record what you found; `propose_action` to suggest release/extend/approve/deny "
    "to a human;",
    "`file_appeal` if the workload's owner needs the limit lifted (justification, requested limit, until);",
    "SRE tokens only: `approve_quarantine`, `deny_quarantine`, `release_quarantine`, `extend_quarantine`.",
)

_COMMON_RESOLVE = (
    "Fix the client, then release (SRE) or let the quarantine expire; probation watches it more tightly "
    "for a while afterwards.",
    "A `watching` record changed nothing: the runaway hurt nobody when it was seen (its `harm` line says "
    "what the brokers looked like). Approve it (SRE) to apply what it would do, deny it to dismiss a "
    "wanted surge, or leave it: it becomes a quarantine by itself if the runaway starts to hurt.",
)

RUNBOOKS: dict[Signature, Runbook] = {r.signature: r for r in (
    Runbook(Signature.RUNAWAY_PRODUCER, "Runaway producer",
            "A producer is writing far more bytes or records per second than its own normal.",
            ("a deploy that loops on produce (a bug, a replay, a backfill without rate limits)",
             "a batch job started at the wrong time or with the wrong input"),
            ("the client's produce byte rate against its baseline in the evidence series",
             "recent deploys of the owning service; whether the traffic is wanted (a planned backfill?)"),
            ("a planned backfill: appeal with a requested limit and an end time",
             "a bug: fix and redeploy; the throttle (quota on user + client-id) only slows this client",
             *_COMMON_RESOLVE)),
    Runbook(Signature.RETRY_STORM, "Retry storm",
            "A client is re-sending requests in a tight loop, usually after errors, multiplying its request rate.",
            ("retries with no backoff after timeouts, authorization or size errors",
             "an idempotent producer resending after a broker restart"),
            ("request rate and request time against produced bytes: many requests, little data",
             "the client's own logs for the error it retries on"),
            ("configure retry.backoff.ms / delivery.timeout.ms; fix the error that triggers the retries",
             *_COMMON_RESOLVE)),
    Runbook(Signature.RUNAWAY_CONSUMER, "Runaway consumer",
            "A consumer is fetching far more than its normal, e.g. re-reading a topic from the beginning.",
            ("an offset reset to earliest, a new consumer group on a large topic, a replay job",),
            ("fetch byte rate against its baseline; committed offsets of the group (a rewind?)",),
            ("a wanted replay: appeal with a requested limit and an end time",
             "an accidental reset: stop the consumer, restore offsets", *_COMMON_RESOLVE)),
    Runbook(Signature.LAG_EXPLOSION, "Lag explosion",
            "A consumer group's lag is growing much faster than normal: it falls behind its input.",
            ("a slow or crashed consumer, a poison message, an upstream burst",),
            ("lag per partition and the group's members; whether the consumer is alive and committing",),
            ("scale or fix the consumer; the guardian acts on the cause (the producer) only if it runs away",
             *_COMMON_RESOLVE)),
    Runbook(Signature.REBALANCE_STORM, "Rebalance storm",
            "A consumer group keeps rebalancing, so none of its members consume for long.",
            ("members crash-looping, session or poll timeouts too short for the processing time",
             "a deploy that rolls members one by one without static membership"),
            ("the group's generation rate and member churn in the evidence",),
            ("raise max.poll.interval.ms / session.timeout.ms, use static membership or cooperative assignment; "
             "the guardian caps the members' request time (request_percentage) meanwhile",
             *_COMMON_RESOLVE)),
    Runbook(Signature.PARTITION_STORM, "Partition storm",
            "A principal is creating topics or partitions far faster than normal.",
            ("a script creating a topic per entity, auto-creation by a misconfigured client",
             "not a deploy creating its topics at once (a Streams app, a Terraform apply): within the "
             "policy's bursts (harm.bursts) that is watched, never throttled"),
            ("topic and partition counts of the principal's prefix; who called CreateTopics",),
            ("stop the script; delete the stray topics once confirmed; the guardian caps the principal's "
             "partition creations (controller_mutation_rate) meanwhile", *_COMMON_RESOLVE)),
    Runbook(Signature.CONNECTION_STORM, "Connection storm",
            "A client is opening connections far faster than normal.",
            ("a client created per request instead of reused; crash-looping pods; wrong bootstrap settings",),
            ("connection creation rate by listener; the pods behind the client",),
            ("reuse one client per process; fix the crash loop; the guardian may isolate the pod",
             *_COMMON_RESOLVE)),
    Runbook(Signature.ANOMALY, "Anomaly",
            "One metric of this workload left its own normal range without matching a named pattern.",
            ("any change in the workload's behaviour: a new feature, a new input, a bug",),
            ("the metric named in the evidence against its baseline; what changed in the owning service",),
            ("if the new level is the new normal, release it (SRE) and the baseline adapts", *_COMMON_RESOLVE)),
)}


def runbook(signature: str | Signature) -> Runbook | None:
    try:
        return RUNBOOKS.get(Signature(signature))
    except ValueError:
        return None
