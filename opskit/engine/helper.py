"""The temporary helper container: one per operation, always removed, even on failure or Ctrl-C.

The helper mounts the data (a volume or a bind path) and sleeps; every step of an operation
(probe, tar, swap) runs in it with `exec`, which costs milliseconds where a new container costs
about a second.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker.errors
import docker.types

from opskit import errors
from opskit.engine import orphans, tar_flavour
from opskit.engine.client import Engine, cleanup_failed, create_container, translated_errors
from opskit.engine.volumes import HELPER_LABEL, DataSource
from opskit.log import get_logger
from opskit.process_owner import owner_label

log = get_logger(__name__)

# The helper waits for exec commands; removal kills it, so the length only bounds a leak.
IDLE_COMMAND = ["sleep", "2147483647"]
# The default helper image, which scripts/setup-engine.sh builds offline (config/schema.py).
GNU_TAR_IMAGE = "opskit-helper:gnu-tar"


# tar's messages are kept whole up to this size; beyond it, the head and the tail.
OUTPUT_LIMIT = 64 * 1024
# Lines that only say that an error came before (busybox, GNU tar), and GNU tar's warnings that
# never cause a failure: never "the" error.
NOT_THE_ERROR = (
    "error exit delayed from previous errors",
    "Exiting with failure status due to previous errors",
    "socket ignored",
    "implausibly old time stamp",
    "Removing leading",
    "bytes of output left out",
)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str  # stdout and stderr, bounded (head and tail of OUTPUT_LIMIT), never data

    def last_line(self) -> str:
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else self.describe_exit()

    def describe_exit(self) -> str:
        """The exit code, and the signal it stands for (a shell's 128+N), e.g. a `docker kill`."""
        number = self.exit_code - 128
        if number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(number).name
            why = ""
            if number == signal.SIGKILL:
                why = " (the helper container was killed, or ran out of memory)"
            return f"killed by {name}, exit code {self.exit_code}{why}"
        return f"exit code {self.exit_code}"

    def first_error_line(self) -> str:
        """Return the first line that states an error (e.g. "tar: ./file: No such file or
        directory"), not a later summary such as busybox's "error exit delayed from previous
        errors"; the last line if none qualifies."""
        for line in self.output.splitlines():
            text = line.strip()
            if text and not any(noise in text for noise in NOT_THE_ERROR):
                return text
        return self.last_line()


class BoundedOutput:
    """Collects a command's output: all of it up to `limit` bytes, else its head and tail."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.left_out = 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        if len(self.tail) > self.half:
            excess = len(self.tail) - self.half
            self.left_out += excess
            del self.tail[:excess]

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        if not self.left_out:
            return head + tail
        return f"{head}\n[... {self.left_out} bytes of output left out ...]\n{tail}"


class RunningExec:
    """A command running in the helper; a thread waits for its end."""

    def __init__(self, session: HelperSession, command: list[str]) -> None:
        self.command = command
        self.result: ExecResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(session,), daemon=True)
        self._thread.start()

    def _run(self, session: HelperSession) -> None:
        try:
            self.result = session.run(self.command)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> ExecResult:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self.result is not None
        return self.result


class HelperSession:
    """A running helper container with `data` mounted at `mount_point`."""

    def __init__(self, engine: Engine, container_id: str, mount_point: str) -> None:
        self.engine = engine
        self.container_id = container_id
        self.mount_point = mount_point
        self._tar_flavour: tar_flavour.TarFlavour | None = None

    def run(self, command: list[str]) -> ExecResult:
        """Run `command` in the helper and wait for it; return its exit code and output
        (bounded: see `BoundedOutput`)."""
        api = self.engine.client.api
        collected = BoundedOutput()
        with translated_errors("running a command in the helper container"):
            exec_id = api.exec_create(self.container_id, command, user="0:0")["Id"]
            for chunk in api.exec_start(exec_id, stream=True):
                collected.add(chunk if isinstance(chunk, bytes) else str(chunk).encode())
            exit_code = exit_code_of(api, exec_id)
        text = collected.text()
        log.debug("helper.exec", command=command, exit_code=exit_code, output=text)
        return ExecResult(exit_code=exit_code if exit_code is not None else -1, output=text)

    def tar_flavour(self) -> tar_flavour.TarFlavour:
        """Return which tar the helper has (`tar --version`, run once per session)."""
        if self._tar_flavour is None:
            result = self.run(["tar", "--version"])
            self._tar_flavour = tar_flavour.parse_version(result.output, result.exit_code)
            log.debug("helper.tar", writer=self._tar_flavour.writer)
        return self._tar_flavour

    def start(self, command: list[str]) -> RunningExec:
        """Start `command` in the helper without waiting."""
        return RunningExec(self, command)

    def run_checked(self, command: list[str], what: str) -> ExecResult:
        """Run `command`; raise `HelperFailed` naming `what` if it exits non-zero."""
        result = self.run(command)
        if result.exit_code != 0:
            raise errors.HelperFailed(f"{what} failed: {result.first_error_line()}")
        return result


def exit_code_of(api: docker.APIClient, exec_id: str) -> int | None:
    """The exec's exit code; the engine may record it a moment after the output ends."""
    for _ in range(100):
        state = api.exec_inspect(exec_id)
        if state["ExitCode"] is not None or not state.get("Running"):
            return state["ExitCode"]
        time.sleep(0.01)
    return None


def ensure_image(engine: Engine, image: str) -> None:
    """Make sure `image` is present, pulling it if missing. Raise `HelperImageMissing` if not."""
    try:
        engine.client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise errors.EngineError(f"inspecting helper image {image}: {exc.explanation}") from exc
    log.info("helper.pulling", image=image)
    try:
        engine.client.images.pull(image)
    except docker.errors.DockerException as exc:
        raise errors.HelperImageMissing(
            f"helper image {image} is missing and could not be pulled",
            f"run scripts/setup-engine.sh, which builds {GNU_TAR_IMAGE} (GNU tar) and "
            "busybox:stable offline from Debian's packages, or choose another image with "
            "--helper-image",
        ) from exc


def data_mount(data: DataSource, mount_point: str, read_only: bool) -> docker.types.Mount:
    return docker.types.Mount(
        target=mount_point,
        source=data.name,
        type="volume" if data.kind == "volume" else "bind",
        read_only=read_only,
    )


@contextlib.contextmanager
def helper_session(
    engine: Engine,
    image: str,
    data: DataSource,
    mount_point: str,
    read_only: bool,
    extra_mounts: list[docker.types.Mount] | None = None,
) -> Iterator[HelperSession]:
    """Start a helper container mounting `data`; yield a session; always remove the container."""
    ensure_image(engine, image)
    mounts = [data_mount(data, mount_point, read_only), *(extra_mounts or [])]
    container_id: str | None = None
    what = f"starting a helper container for {data.describe()}"
    try:
        try:
            container_id = create_container(
                engine,
                what,
                image,
                entrypoint=IDLE_COMMAND,
                command=[],
                mounts=mounts,
                labels={HELPER_LABEL: "1", orphans.OWNER_LABEL: owner_label()},
                network_mode="none",
                user="0:0",
                # Its `sleep` ignores SIGTERM: an engine stopping would wait 10 s per helper.
                stop_signal="SIGKILL",
                detach=True,
            )
            with translated_errors(what):
                engine.client.api.start(container_id)
        except errors.EngineError as exc:
            raise _explain_start_failure(exc, data) from exc
        log.debug("helper.started", container=container_id[:12], data=data.describe())
        yield HelperSession(engine, container_id, mount_point)
    finally:
        if container_id is not None:
            _remove(engine, container_id)


def _explain_start_failure(exc: errors.EngineError, data: DataSource) -> errors.OpskitError:
    text = str(exc)
    if data.kind == "path" and (
        "bind source path does not exist" in text or "no such file" in text
    ):
        return errors.NotFound(f"path {data.name} does not exist on the engine's host")
    return exc


def _remove(engine: Engine, container_id: str) -> None:
    # A failed removal is logged, not raised, so it never hides the error that got us here.
    # A second Ctrl-C during removal must not leak the container: finish, then re-raise.
    try:
        _remove_once(engine, container_id)
    except errors.Interrupted:
        _remove_once(engine, container_id)
        raise


def _remove_once(engine: Engine, container_id: str) -> None:
    api = engine.client.api
    try:
        # kill, wait, remove: measured 0.05 s where remove(force=True) takes 0.3-0.6 s.
        try:
            api.kill(container_id)
            api.wait(container_id, timeout=30)
        except docker.errors.APIError as exc:
            if isinstance(exc, docker.errors.NotFound):
                raise
            log.debug("helper.kill_failed", container=container_id[:12], error=str(exc))
        api.remove_container(container_id, force=True, v=False)
        log.debug("helper.removed", container=container_id[:12])
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, OSError) as exc:
        cleanup_failed(log, "helper.remove_failed", exc, container=container_id[:12])
