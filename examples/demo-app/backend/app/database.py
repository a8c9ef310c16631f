"""Where the database is: DATABASE_URL, shared by the app and the Alembic migration."""

from __future__ import annotations

import os

# The deployment hands over a libpq-style `postgresql://` URL; SQLAlchemy 2.1 maps that
# scheme to psycopg 3, while the image ships psycopg2, so the driver is named explicitly.
_DRIVER_SCHEMES = ("postgresql://", "postgres://")
_DRIVER_URL_PREFIX = "postgresql+psycopg2://"


def database_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return None
    for scheme in _DRIVER_SCHEMES:
        if url.startswith(scheme):
            return _DRIVER_URL_PREFIX + url.removeprefix(scheme)
    return url
