"""Alembic migrations, applied automatically when a data directory is opened."""

# The newest revision. Opening a database at this revision imports no Alembic at all
# (fast CLI start); tests check that it matches the scripts' head.
HEAD = "0003"
