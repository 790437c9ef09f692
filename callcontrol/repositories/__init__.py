"""Database adapters for the engine's ports (SQLAlchemy lives here and in ``db``)."""
