"""The named volumes: database data (and the one a point-in-time restore moved it to),
pgBackRest's repository, the database's socket directory, backups, the backend's logs, nginx's
upstream files, the frontend's published assets and, with ACME, the certificates and the
challenge files; all outlive a destroy."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.config import StackSettings
from components.container import VolumeNames, contract_labels, docker_name


class Volumes(pulumi.ComponentResource):
    pgdata: docker.Volume
    restored: docker.Volume | None = None
    pgbackrest: docker.Volume
    pgsocket: docker.Volume
    backups: docker.Volume
    backend_logs: docker.Volume
    upstreams: docker.Volume
    assets: docker.Volume
    certs: docker.Volume | None = None
    acme_webroot: docker.Volume | None = None
    names: VolumeNames

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
            logical: str, service: str, override: str | None, guarded: bool
        ) -> docker.Volume:
            return docker.Volume(
                logical,
                name=override or docker_name(stack, logical),
                labels=[
                    docker.VolumeLabelArgs(label=k, value=v)
                    for k, v in sorted(contract_labels(stack, service).items())
                ],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=guarded),
            )

        self.pgdata = volume("pgdata", "db", settings.database.volume_name, protect)
        server_data = self.pgdata
        if settings.database.restored_volume is not None:
            # Made by a point-in-time restore (astats restore), which names it here: the server
            # moves to it, and the data volume above stays as it was. Protected like it; the
            # next restore unprotects it before taking its place, and retained, so that only
            # forgets it.
            server_data = self.restored = volume(
                "pgdata-restored", "db", settings.database.restored_volume, protect
            )
        self.backups = volume("backups", "backup", settings.backup.volume_name, protect)
        # Archived WAL and physical backups: the only way back to a point in time.
        self.pgbackrest = volume("pgbackrest", "db", None, protect)
        # Only a socket: not data (the policy pack's data-volume rule looks for service db).
        self.pgsocket = volume("pgsocket", "db-socket", None, False)
        self.backend_logs = volume("backend-logs", "backend", None, False)
        self.upstreams = volume("upstreams", "nginx", None, False)
        self.assets = volume("assets", "frontend", None, False)
        if settings.tls.mode == "acme":
            # The account key and the certificates: a new account or certificate counts
            # against the CA's rate limits, so these are kept like the data.
            self.certs = volume("certs", "acme", None, protect)
            self.acme_webroot = volume("acme-webroot", "acme", None, False)
        self.names = VolumeNames(
            pgdata=server_data.name,
            backups=self.backups.name,
            backend_logs=self.backend_logs.name,
            upstreams=self.upstreams.name,
            assets=self.assets.name,
            certs=self.certs.name if self.certs else None,
            acme_webroot=self.acme_webroot.name if self.acme_webroot else None,
            pgbackrest=self.pgbackrest.name,
            pgsocket=self.pgsocket.name,
        )
        outputs: dict[str, pulumi.Input[str]] = {
            "pgdata": server_data.name,
            "pgbackrest": self.pgbackrest.name,
            "backups": self.backups.name,
            "backendLogs": self.backend_logs.name,
            "upstreams": self.upstreams.name,
            "assets": self.assets.name,
        }
        if self.certs and self.acme_webroot:
            outputs |= {"certs": self.certs.name, "acmeWebroot": self.acme_webroot.name}
        self.register_outputs(outputs)
