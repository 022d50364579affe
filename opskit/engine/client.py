"""Connecting to a Docker engine, and turning docker-py's exceptions into opskit errors.

This package is the only place that imports `docker`. Everything above it sees plain
dataclasses and `opskit.errors`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.utils
import requests.exceptions

from opskit import errors, signals
from opskit.log import Logger, get_logger

log = get_logger(__name__)

# A helper container's start and exit are quick; a big get/put_archive is not.
API_TIMEOUT_SECONDS = 600


DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
# An engine reference is an address, or a Docker context written `context:NAME` (--context,
# `engine:` in the config); cli/options.py writes out a copy so that help loads no docker.
CONTEXT_PREFIX = "context:"


@dataclass
class Engine:
    """A connected engine. `shares_filesystem` says whether host paths are visible to it."""

    client: docker.DockerClient
    address: str
    shares_filesystem: bool

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class EngineAddress:
    """Where an engine is: its URL, its TLS settings, and how messages name it."""

    url: str
    tls: object = None  # docker.tls.TLSConfig, True (verify with the system CAs), or None
    shown: str = ""

    def describe(self) -> str:
        return self.shown or self.url


def engine_address(reference: str | None = None) -> str:
    """Return the URL opskit will use, for messages: see `resolve_address`."""
    try:
        return resolve_address(reference).describe()
    except errors.OpskitError:
        return reference or os.environ.get("DOCKER_HOST") or DEFAULT_ADDRESS


def resolve_address(reference: str | None = None) -> EngineAddress:
    """Given an engine reference (a URL, `context:NAME`, or None), return its address.

    None follows the docker CLI: DOCKER_HOST, else DOCKER_CONTEXT, else the current context of
    ~/.docker/config.json, else the local socket. A URL from DOCKER_HOST takes its TLS from
    DOCKER_TLS_VERIFY and DOCKER_CERT_PATH. Raise `UsageError` for an unknown context.
    """
    if reference and reference.startswith(CONTEXT_PREFIX):
        return _context_address(reference[len(CONTEXT_PREFIX) :])
    url = reference or os.environ.get("DOCKER_HOST")
    if url:
        return EngineAddress(url=url, tls=_tls_from_environment(url))
    context = os.environ.get("DOCKER_CONTEXT")
    if context:
        return _context_address(context)
    current = _current_context_name()
    if current not in (None, "default"):
        return _context_address(current)
    return EngineAddress(url=DEFAULT_ADDRESS)


def _tls_from_environment(url: str) -> object:
    if not url.startswith(("tcp://", "https://")):
        return None
    if not (os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")):
        return None
    try:
        return docker.utils.kwargs_from_env(environment={**os.environ, "DOCKER_HOST": url}).get(
            "tls"
        )
    except docker.errors.TLSParameterError as exc:
        raise errors.UsageError(
            f"the TLS settings for {url} are incomplete: {exc}",
            "set DOCKER_CERT_PATH to a directory with ca.pem, cert.pem and key.pem",
        ) from exc


def _current_context_name() -> str | None:
    from docker.context.config import get_current_context_name

    try:
        return str(get_current_context_name())
    except (OSError, ValueError):
        return None


def _context_address(name: str) -> EngineAddress:
    from docker.context import ContextAPI

    try:
        found = ContextAPI.get_context(name)
    except (docker.errors.DockerException, OSError, ValueError) as exc:
        raise errors.UsageError(
            f"cannot read Docker context {name!r}: {_explanation(exc)}",
            "list contexts with `docker context ls`",
        ) from exc
    if found is None or not found.Host:
        raise errors.UsageError(
            f"no Docker context named {name!r}", "list contexts with `docker context ls`"
        )
    return EngineAddress(
        url=found.Host, tls=found.TLSConfig, shown=f"{found.Host} (context {name})"
    )


def connect(docker_host: str | None = None) -> Engine:
    """Given an optional engine reference (URL or `context:NAME`), connect and ping; return
    an `Engine`. The API version is negotiated with the engine, never pinned.

    Raise `EngineUnreachable` if nothing answers.
    """
    address = resolve_address(docker_host)
    try:
        client = docker.DockerClient(
            base_url=address.url,
            timeout=API_TIMEOUT_SECONDS,
            tls=address.tls or False,
            # The ssh binary, as the docker CLI uses: ~/.ssh/config, agents and known_hosts.
            use_ssh_client=address.url.startswith("ssh://"),
        )
        client.ping()
        info = client.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise errors.EngineUnreachable(
            f"no Docker engine answers at {address.describe()}",
            "start dockerd (scripts/setup-engine.sh does), or check --docker-host, "
            "--context and DOCKER_HOST",
        ) from exc
    local = runs_on_this_host(info)
    log.debug("engine.connected", address=address.url, local=local)
    return Engine(client=client, address=address.describe(), shares_filesystem=local)


def runs_on_this_host(info: dict[str, object]) -> bool:
    """Whether the engine that answered `info` (GET /info) sees this machine's filesystem.

    Asked of the engine, not read from its URL's scheme: Docker Desktop's unix socket leads
    into a VM, and a tcp:// or ssh:// URL may lead back here. Its host name must be ours and
    its data root a directory here; engines from 23 on also keep their ID in that root.
    """
    if info.get("Name") != socket.gethostname():
        return False
    root = info.get("DockerRootDir")
    if not isinstance(root, str) or not os.path.isdir(root):
        return False
    try:
        recorded = Path(root, "engine-id").read_text().strip()
    except OSError:
        return True  # engines before 23 keep no engine-id file
    return recorded == info.get("ID")


def engine_answers(docker_host: str | None = None) -> bool:
    """Return whether an engine answers, without raising."""
    try:
        connect(docker_host).close()
    except errors.OpskitError:
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


def _explanation(exc: BaseException) -> str:
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
