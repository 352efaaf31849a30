"""Webhooks: endpoints users register, and signed delivery of their events with retries."""
