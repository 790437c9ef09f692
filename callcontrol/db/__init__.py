"""Persistence of callcontrol: models, engine and migrations, and the ledger.

``models`` is the schema; ``engine`` makes the engine, sessions and runs the
shipped Alembic migrations; ``ledger.post`` is the only way money moves.
"""
