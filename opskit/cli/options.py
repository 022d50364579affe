"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $OPSKIT_CONFIG, /etc/opskit/opskit.yaml, "
        "~/.config/opskit/opskit.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
]
DockerHostOption = Annotated[
    str | None,
    typer.Option(
        "--docker-host",
        envvar="DOCKER_HOST",
        help="Engine address, e.g. unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for another opskit run on the same volume or path to finish "
        "(default 0: fail at once, naming that run).",
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Directory, s3://bucket/prefix or target name holding the backups (default: "
        "$OPSKIT_TARGET, config default_target).",
        show_default=False,
    ),
]
