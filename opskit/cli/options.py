"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opskit import errors

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
        "-H",
        help="Engine address, e.g. unix:///var/run/docker.sock, tcp://host:2376 (TLS from "
        "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), ssh://user@host. Default: $DOCKER_HOST, "
        "else $DOCKER_CONTEXT or the current Docker context, else the local socket.",
        show_default=False,
    ),
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        help="Docker context to use (as `docker context ls` lists them), instead of --docker-host.",
        show_default=False,
    ),
]
HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Another machine's backups, in a target shared by a fleet (targets with "
        "host_prefix, the default for S3 targets). Default: this machine's.",
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
EncryptToOption = Annotated[
    list[str] | None,
    typer.Option(
        "--encrypt-to",
        help="Encrypt with age to this recipient (age1… or an ssh-ed25519/ssh-rsa public key); "
        "repeatable. Default: the target's encryption in the config.",
        show_default=False,
    ),
]
EncryptToFileOption = Annotated[
    Path | None,
    typer.Option(
        "--encrypt-to-file",
        help="Encrypt to the recipients in this file, one per line (as age -R reads it).",
        show_default=False,
    ),
]
IdentityOption = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        "-i",
        help="age identity file or SSH private key for encrypted backups (default: "
        "$OPSKIT_AGE_IDENTITY_FILE, then the target's encryption.identity_file).",
        show_default=False,
    ),
]

# opskit.engine.client.CONTEXT_PREFIX, written out so that help loads no docker.
CONTEXT_PREFIX = "context:"


def engine_reference(docker_host: str | None, context: str | None) -> str | None:
    """Given `--docker-host` and `--context`, return one engine reference: the address, or
    `context:NAME` (None: the environment's engine). Raise `UsageError` if both are given."""
    if docker_host and context:
        raise errors.UsageError("--docker-host and --context name two engines", "give one of them")
    if context:
        return CONTEXT_PREFIX + context
    return docker_host or None
