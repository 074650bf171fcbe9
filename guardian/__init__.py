"""Kafka workload guardian: finds runaway clients and sequesters exactly them."""

__version__ = "0.1.0"
