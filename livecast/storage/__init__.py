"""Storage: the database and its migrations."""
