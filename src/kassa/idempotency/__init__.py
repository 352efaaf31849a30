"""Idempotency keys: claim, fingerprint, replay."""
