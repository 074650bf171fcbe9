"""Pure decisions: the policy document, the harm test, the decision, pressure and a throttle's effect."""
