"""Thin clients of what the guardian talks to: Kafka admin and topics, KIP-714 telemetry, the guardian's own API."""
