"""How the backend, the backup scheduler and the jobs reach PostgreSQL: the one place that
builds a connection URL or a libpq environment."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi

POSTGRES_PORT = 5432


def libpq_env(*, host: str, name: str, user: str, port: int = POSTGRES_PORT) -> dict[str, str]:
    """libpq's settings for pg_dump and psql; PGPASSWORD is given apart, as a secret."""
    return {"PGHOST": host, "PGPORT": str(port), "PGUSER": user, "PGDATABASE": name}


@dataclass(frozen=True, kw_only=True)
class DatabaseEndpoint:
    host: str
    """The database's alias on the data network."""
    port: int = POSTGRES_PORT
    name: str
    user: str
    password: pulumi.Output[str]
    """Secret; it travels on stdin or in a file, never in a container's environment."""

    def url(self) -> pulumi.Output[str]:
        """DATABASE_URL for SQLAlchemy and Alembic, the password percent-encoded."""
        return pulumi.Output.secret(
            self.password.apply(
                lambda pw: (
                    f"postgresql://{self.user}:{quote(pw, safe='')}"
                    f"@{self.host}:{self.port}/{self.name}"
                )
            )
        )

    def libpq_env(self) -> dict[str, str]:
        return libpq_env(host=self.host, name=self.name, user=self.user, port=self.port)
