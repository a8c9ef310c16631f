"""astats-infra: load the stack's config, build the A-Stats Engine, export what operators need."""

from pathlib import Path

import pulumi

from components.config import load_stack_config
from components.stack import AstatsStack

config = load_stack_config(str(Path(__file__).resolve().parent))
engine = AstatsStack("astats", config)

pulumi.export("url", engine.url)
pulumi.export(
    "containers",
    {
        "db": engine.database.container.name,
        "backend": engine.backend.container.name,
        "frontend": engine.frontend.container.name,
        "nginx": engine.nginx.container.name,
        **({"backup": engine.backups.container.name} if engine.backups.container else {}),
    },
)
pulumi.export("dataVolume", engine.volumes.pgdata.name)
pulumi.export("backupsVolume", engine.volumes.backups.name)
pulumi.export("backendLogsVolume", engine.volumes.backend_logs.name)
