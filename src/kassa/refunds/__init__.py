"""Refunds of completed payments."""
