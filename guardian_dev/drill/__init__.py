"""The incident drill: real clients, a real broker, a real runaway, measured with the guardian off and on.

* ``scenario`` - the scenario file format (YAML, ``configs/scenarios/drill-*.yaml``);
* ``load``     - load generators (confluent-kafka clients, Kafka's ProducerPerformance/ConsumerPerformance);
* ``runner``   - one run of a scenario, the guardian as a ``guardian run --api`` subprocess;
* ``report``   - timings, benign latency per phase, false actions; JSON, markdown and PNG;
* ``cli``      - ``guardian-dev bench drill --scenario FILE --out DIR [--json]``.

Nothing happens at import time.
"""
