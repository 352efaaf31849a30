"""Payments: creation, processing, cancellation, status."""
