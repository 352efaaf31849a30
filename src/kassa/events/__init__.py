"""Events: the outbox of every payment and refund state change."""
