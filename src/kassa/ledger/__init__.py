"""The double-entry ledger: append-only lines, each posting summing to zero per currency."""
