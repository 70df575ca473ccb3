"""Local store: SQLAlchemy models, migrations, repositories, status, media store, sync. No Qt."""
