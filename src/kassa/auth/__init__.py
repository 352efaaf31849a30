"""Users, passwords, sessions and bearer tokens."""
