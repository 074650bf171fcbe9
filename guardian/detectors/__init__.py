"""Online per-workload anomaly detectors: pure code, no I/O."""
