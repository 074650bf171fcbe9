"""Actuators: plan, apply, verify and revert one kind of action against the cluster."""
