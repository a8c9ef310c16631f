"""Alembic environment: the target database comes from DATABASE_URL, never from a file."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from app.database import database_url
from sqlalchemy import create_engine, pool

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = database_url()
    if url is None:
        raise SystemExit("DATABASE_URL is not set; the migration needs the database to migrate")
    return url


def run_offline() -> None:
    context.configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
