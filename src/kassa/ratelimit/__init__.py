"""Rate limits: per client IP over /api, and the per-email login lockout."""
