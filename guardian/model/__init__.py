"""Pure data every layer speaks: samples and workloads, detections, quarantines and their lifecycle."""
