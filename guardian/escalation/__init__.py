"""Escalation: the short summary of a decision, its channels (Slack, PagerDuty, webhook, Kafka) and their dispatch."""
