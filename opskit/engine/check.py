"""The restore drill's application check: a container of the user's image with the scratch
volume mounted, run to its end (or its timeout), always removed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import docker.errors
import docker.types
import requests.exceptions

from opskit import errors
from opskit.engine import orphans
from opskit.engine.client import Engine, create_container, translated_errors
from opskit.engine.volumes import HELPER_LABEL
from opskit.log import get_logger
from opskit.process_owner import owner_label

log = get_logger(__name__)

CHECK_LABEL = "io.opskit.check"
# The last lines of the check's output kept for the report, each cut to this many characters.
TAIL_LINES = 20
LINE_LIMIT = 500


@dataclass(frozen=True)
class CheckResult:
    """How the check ended: its exit code (None if it timed out) and its last output lines."""

    exit_code: int | None
    output_tail: list[str]
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_check(
    engine: Engine,
    image: str,
    command: list[str],
    volume: str,
    mount_point: str = "/data",
    timeout_seconds: float = 600,
    user: str | None = None,
) -> CheckResult:
    """Given an image and a command, run it in a new container with `volume` mounted
    (read-write: it is a scratch copy, and an application may need to replay its journal) at
    `mount_point`, with no network. Wait at most `timeout_seconds`, then kill it. Return its
    exit code and last output lines. The container is always removed, even on Ctrl-C.

    Raise `NotFound` if the image is not on the engine (a check image is never pulled: the
    drill must not depend on a registry), `EngineError` if it cannot be started.
    """
    require_image(engine, image)
    container_id: str | None = None
    try:
        what = f"starting the check container ({image})"
        container_id = create_container(
            engine,
            what,
            image,
            command=command,
            mounts=[docker.types.Mount(target=mount_point, source=volume, type="volume")],
            # The helper label too: a check left by a killed opskit is removed by the next run.
            labels={CHECK_LABEL: "1", HELPER_LABEL: "1", orphans.OWNER_LABEL: owner_label()},
            network_mode="none",
            user=user or "",
            detach=True,
        )
        with translated_errors(what):
            container = engine.client.containers.get(container_id)
            container.start()
        log.info("check.started", image=image, command=command, volume=volume)
        exit_code: int | None = None
        timed_out = False
        with translated_errors("waiting for the check container"):
            try:
                exit_code = int(container.wait(timeout=timeout_seconds)["StatusCode"])
            except requests.exceptions.RequestException as exc:
                if not _is_timeout(exc):
                    raise
                timed_out = True
                log.warning("check.timed_out", image=image, seconds=timeout_seconds)
        return CheckResult(exit_code, _tail(engine, container_id), timed_out)
    finally:
        if container_id is not None:
            _remove(engine, container_id)


def _is_timeout(exc: BaseException) -> bool:
    """Over a unix socket, docker-py's wait() reports its timeout as a ConnectionError
    ("Read timed out"), over TCP as a ReadTimeout."""
    return isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower()


def require_image(engine: Engine, image: str) -> None:
    """Raise `NotFound` unless `image` is on the engine."""
    try:
        with translated_errors(f"inspecting the check image {image}"):
            engine.client.images.get(image)
    except errors.NotFound as exc:
        raise errors.NotFound(
            f"check image {image} is not on the engine",
            "load or build it first (docker pull/load): the drill never pulls",
        ) from exc


def _tail(engine: Engine, container_id: str) -> list[str]:
    """The last output lines (stdout and stderr), bounded in number and length."""
    try:
        raw = engine.client.api.logs(container_id, stdout=True, stderr=True, tail=TAIL_LINES)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return [f"(output unavailable: {exc})"]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return [line[:LINE_LIMIT] for line in text.splitlines() if line.strip()][-TAIL_LINES:]


def _remove(engine: Engine, container_id: str) -> None:
    """Remove the container; a second Ctrl-C meanwhile must not leak it."""
    try:
        _remove_once(engine, container_id)
    except errors.Interrupted:
        _remove_once(engine, container_id)
        raise


def _remove_once(engine: Engine, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            engine.client.api.remove_container(container_id, force=True, v=False)
            log.debug("check.removed", container=container_id[:12])
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.error("check.remove_failed", container=container_id[:12], error=str(exc))
