"""Helpers for tests of code built on the guardian: pure data, no I/O.

``without_harm_test(policies)``: the same policy set with the harm test off, so
a test about something else (the API, the lifecycle, the lease) gets a
quarantine from a detection alone. ``pressure_blaming(...)``: a ``Pressure``
snapshot in which one broker is starved and the named clients hold its load,
for tests of the harm path itself.
"""

from __future__ import annotations

from guardian.engine.pressure import BrokerPressure, ClientLoad, Pressure
from guardian.policy import PolicySet


def without_harm_test(policies: PolicySet) -> PolicySet:
    """``policies`` with ``global.harm.enabled`` false: detections act on change alone."""
    harm = policies.global_.harm.model_copy(update={"enabled": False})
    return policies.model_copy(update={"global_": policies.global_.model_copy(update={"harm": harm})})


def pressure_blaming(clients: list[tuple[str, str]], ts: float, broker: str = "broker-1",
                     idle: float = 0.02, others: float = 5.0) -> Pressure:
    """Broker ``broker`` with request handlers ``idle`` idle; each of ``clients`` (principal, client-id)
    uses 90 % of a thread and the rest of the cluster ``others`` %: every one of them explains the pressure."""
    loads = {c: ClientLoad(request_time=90.0, bytes_in=1e6, bytes_out=1e6) for c in clients}
    loads[("User:someone-else", "other")] = ClientLoad(request_time=others, bytes_in=1e4, bytes_out=1e4)
    total = ClientLoad()
    for load in loads.values():
        total = total + load
    b = BrokerPressure(broker=broker, ts=ts, signals={"request_handler_idle": idle, "network_processor_idle": 0.9},
                       normals={}, clients=loads, total=total)
    return Pressure(ts=ts, brokers={broker: b})
