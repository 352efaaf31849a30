"""Payment processors behind one Protocol; vendor types never leave this package."""
