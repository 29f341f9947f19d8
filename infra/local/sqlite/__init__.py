"""The local backend: every port of chalicelib.ports on one SQLite database file."""
