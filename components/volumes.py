"""The named volumes: database data, backups and the backend's logs; all outlive a destroy."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.config import StackSettings


class Volumes(pulumi.ComponentResource):
    pgdata: docker.Volume
    backups: docker.Volume
    backend_logs: docker.Volume

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        settings: StackSettings,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("astats:volumes:Volumes", name, None, opts)
        # Deleting data is a deliberate manual act: volumes are retained on destroy, and
        # protection also stops a config change from swapping in an empty volume.
        protect = settings.database.protect_volume

        def volume(
            logical: str, default_name: str, service: str, override: str | None, guarded: bool
        ) -> docker.Volume:
            return docker.Volume(
                logical,
                name=override or default_name,
                labels=[
                    docker.VolumeLabelArgs(label="astats.service", value=service),
                    docker.VolumeLabelArgs(label="astats.stack", value=stack),
                ],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=guarded),
            )

        self.pgdata = volume(
            "pgdata", f"astats-{stack}-pgdata", "db", settings.database.volume_name, protect
        )
        self.backups = volume(
            "backups", f"astats-{stack}-backups", "backup", settings.backup.volume_name, protect
        )
        self.backend_logs = volume(
            "backend-logs", f"astats-{stack}-backend-logs", "backend", None, False
        )
        self.register_outputs(
            {
                "pgdata": self.pgdata.name,
                "backups": self.backups.name,
                "backendLogs": self.backend_logs.name,
            }
        )
