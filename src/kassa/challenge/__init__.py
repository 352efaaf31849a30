"""The simulator's 3-D Secure challenge page: what a card issuer's page is to a real card."""
