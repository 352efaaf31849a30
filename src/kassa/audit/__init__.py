"""Checking the books: the ledger against payments, refunds and the processor's records.

An audit reads across domains, so it lives here rather than in any of them: `ledger/` stays
a leaf that the payments and refunds services post to, and imports nothing back.
"""
