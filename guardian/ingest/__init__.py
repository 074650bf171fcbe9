"""Metrics ingestion: sources put sample batches on Kafka, stream processors take them off.

* ``codec``: the wire format of ``guardian.metrics`` (one batch per workload per record);
* ``rates``: counters into rates across scrapes, restarts and resets (pure);
* ``prometheus``, ``admin_poller``, ``client_stats``: the three sources;
* ``publisher``: puts batches on the metrics topic;
* ``processor``: validate, decode, hand to the detector stage, route to detections or DLQ (pure);
* ``worker``: the faust-streaming app that runs the processor over Kafka.

Submodules import their client libraries lazily; importing this package does nothing.
"""
