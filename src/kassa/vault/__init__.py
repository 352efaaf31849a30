"""Card data: validation rules and encryption at rest."""
