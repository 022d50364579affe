"""Connecting to a Docker engine, and turning docker-py's exceptions into opskit errors.

This package is the only place that imports `docker`. Everything above it sees plain
dataclasses and `opskit.errors`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors
import requests.exceptions

from opskit import errors, signals
from opskit.log import Logger, get_logger

log = get_logger(__name__)

# A helper container's start and exit are quick; a big get/put_archive is not.
API_TIMEOUT_SECONDS = 600


@dataclass
class Engine:
    """A connected engine. `shares_filesystem` says whether host paths are visible to it."""

    client: docker.DockerClient
    address: str
    shares_filesystem: bool

    def close(self) -> None:
        self.client.close()


def engine_address(docker_host: str | None = None) -> str:
    """Return the address opskit will use: the explicit one, else DOCKER_HOST, else the socket."""
    return docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_local_address(address: str) -> bool:
    """A unix socket (or npipe) engine runs on this machine and sees its files."""
    return address.startswith(("unix://", "npipe://")) or address.startswith("/")


def connect(docker_host: str | None = None) -> Engine:
    """Given an optional engine address, connect and ping. Return an `Engine`.

    Raise `EngineUnreachable` if nothing answers.
    """
    address = engine_address(docker_host)
    try:
        client = docker.DockerClient(base_url=address, timeout=API_TIMEOUT_SECONDS)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise errors.EngineUnreachable(
            f"no Docker engine answers at {address}",
            "start dockerd (scripts/setup-engine.sh does) or set DOCKER_HOST",
        ) from exc
    log.debug("engine.connected", address=address)
    return Engine(client=client, address=address, shares_filesystem=is_local_address(address))


def engine_answers(docker_host: str | None = None) -> bool:
    """Return whether an engine answers, without raising."""
    try:
        connect(docker_host).close()
    except errors.EngineUnreachable:
        return False
    return True


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn docker-py and transport exceptions raised inside the block into opskit errors.

    `what` names the operation for the message, e.g. "inspecting volume pgdata".
    """
    try:
        yield
    except errors.OpskitError:
        raise
    except docker.errors.NotFound as exc:
        raise errors.NotFound(f"{what}: not found ({_explanation(exc)})") from exc
    except docker.errors.APIError as exc:
        raise errors.EngineError(f"{what}: the engine said: {_explanation(exc)}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise errors.EngineUnreachable(
            f"{what}: lost the Docker engine", "check that dockerd is running"
        ) from exc


def _explanation(exc: docker.errors.APIError | docker.errors.DockerException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip().splitlines()[0]


def create_container(engine: Engine, what: str, image: str, **settings: object) -> str:
    """Create a container (docker-py's `containers.create` settings); return its id.

    Signals are held while the engine creates it: an interrupt between the engine's create and
    our knowing the id would leak the container (a SIGTERM right after a daemon's job started
    did). One that arrived meanwhile removes the new container, then raises `Interrupted`.
    """
    container_id: str | None = None
    with signals.deferred(reraise=False) as caught, translated_errors(what):
        container_id = str(engine.client.containers.create(image, **settings).id)
    if caught.signal_name is not None:
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            engine.client.api.remove_container(container_id, force=True)
        raise errors.Interrupted(caught.signal_name)
    return container_id


def engine_lost(exc: BaseException) -> bool:
    """Whether `exc` says the engine stopped answering. Cleanup that fails for this reason is
    logged at debug level only: the run's own error already says the engine was lost, and the
    next run removes what is left (orphans.py)."""
    if isinstance(exc, errors.EngineUnreachable | requests.exceptions.ConnectionError):
        return True
    return isinstance(exc, docker.errors.DockerException) and "Connection" in str(exc)


def cleanup_failed(logger: Logger, event: str, exc: BaseException,
                   **fields: object) -> None:  # fmt: skip
    """Log a failed cleanup step: an error, or debug if the engine was lost (`engine_lost`)."""
    (logger.debug if engine_lost(exc) else logger.error)(event, error=str(exc), **fields)
