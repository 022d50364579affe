"""A second Docker engine for the engine-death tests: its own dockerd, in its own network
namespace, that a test may kill (SIGKILL) and restart. The main engine is never touched.

The recipe is the one measured in ../shared/notes/measurements.md: a second dockerd in the
host's network namespace would delete the main engine's docker0 bridge, and `ip netns exec`
hides the cgroups, so it runs under `nsenter --net=/var/run/netns/NAME`, with its data root,
exec root, pid file and socket in one private directory. Both engines share this machine's
filesystem, so opskit's FIFO transfer works against it as against a local engine.

dockerd starts its own containerd (under the exec root, with `Pdeathsig`: it dies with dockerd),
and containerd starts one shim per container; the shims are re-parented to init and survive
both. So "the engine dies" has two forms here:
- `kill()`: dockerd, its containerd, the shims and the containers' processes, all SIGKILLed
  at once: nothing serves containers any more, and the helper's tar stops mid-stream.
- `kill(containers_too=False)`: dockerd alone (its containerd dies with it): the API is gone,
  but running containers keep running until the engine is restarted (without live-restore,
  the restarted engine kills them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import requests.exceptions

# The images opskit's helpers and the tree snapshots need, copied from the main engine.
IMAGES = ("opskit-helper:gnu-tar", "busybox:stable")
READY_SECONDS = 30
GONE_SECONDS = 30


class SecondEngine:
    """A dockerd of our own in network namespace `netns`, everything of it below `root`.

    `address` is what DOCKER_HOST takes; `client` talks to it (a new client after each start).
    """

    def __init__(self, root: Path, netns: str) -> None:
        self.root = root
        self.netns = netns
        self.socket = root / "docker.sock"
        self.address = f"unix://{self.socket}"
        self.log_path = root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: docker.DockerClient | None = None
        self._killed: set[int] = set()  # pids of the last kill, until they are reaped

    # --- life cycle ---------------------------------------------------------------------

    def command(self) -> list[str]:
        root = self.root
        return [
            "nsenter", f"--net=/var/run/netns/{self.netns}",
            "dockerd",
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "pid"),
            "-H", self.address,
            "--bridge=none",
            "--iptables=false",
        ]  # fmt: skip

    def start(self) -> None:
        """Start dockerd (again: after `kill`, on the same data root) and wait until it answers.

        Fail with the tail of its log if it exits or stays silent for READY_SECONDS.
        """
        assert self.process is None or self.process.poll() is not None, "dockerd is running"
        # A restarted dockerd takes its containerd's pid file for a live containerd while that
        # pid exists, even as a zombie (init reaps orphans here only after a second or two).
        self._wait_gone(lambda: [], self._killed)
        self._killed = set()
        with open(self.log_path, "ab") as log_file:
            # nsenter execs dockerd: this process *is* dockerd. Its own session, so that a
            # Ctrl-C of pytest reaches pytest only, and teardown stops it in order.
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._client = None
        deadline = time.monotonic() + READY_SECONDS
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the second dockerd did not come up (exit {self.process.poll()}); "
                    f"its log ends:\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.address, timeout=5)
            try:
                client.ping()
            finally:
                client.close()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return False
        return True

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.address, timeout=60)
        return self._client

    def kill(self, containers_too: bool = True) -> list[int]:
        """SIGKILL the engine: dockerd and its containerd, and with `containers_too` also the
        shims of this engine and every process below them (the containers). Return the pids
        killed. They are stopped (SIGSTOP) first, until no new one appears, so that none forks
        a child that escapes; then all are killed at once. Return once none of them runs (some
        may still be zombies: `start` waits for them). Fail if one survives GONE_SECONDS."""
        assert self.process is not None and self.process.poll() is None, "dockerd is not running"
        if self._client is not None:
            self._client.close()
            self._client = None
        find = self.processes if containers_too else self._dockerd_tree
        stopped: set[int] = set()
        while new := set(find()) - stopped:
            _signal_all(new, signal.SIGSTOP)
            stopped |= new
        _signal_all(stopped, signal.SIGKILL)
        self.process.wait(timeout=GONE_SECONDS)  # dockerd is our child: reap it
        self._wait_gone(find)
        self._killed |= stopped
        return sorted(stopped)

    def _wait_gone(self, find: Callable[[], list[int]], killed: set[int] = frozenset()) -> None:
        """Wait until `find` finds nothing and every pid of `killed` is reaped (not a zombie)."""
        deadline = time.monotonic() + GONE_SECONDS
        while (pids := find()) or any(os.path.exists(f"/proc/{pid}") for pid in killed):
            if time.monotonic() > deadline:
                left = pids or [pid for pid in killed if os.path.exists(f"/proc/{pid}")]
                pytest.fail(f"engine processes survived SIGKILL: {_describe(left)}")
            _signal_all(set(pids), signal.SIGKILL)
            time.sleep(0.01)

    def restart(self) -> None:
        """Start the engine again after a `kill`."""
        self.start()

    def ensure_up(self) -> None:
        """Start the engine if a test left it dead (one that failed before restarting it).
        Containers that outlived a dockerd-alone kill are killed by the restarted engine."""
        if self.process is None or self.process.poll() is not None:
            self.start()

    def stop(self) -> None:
        """Stop the engine cleanly: remove its containers (so that dockerd's shutdown does not
        wait for a stop timeout per container), SIGTERM dockerd, and kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            for summary in self.client.api.containers(all=True):
                self.client.api.remove_container(summary["Id"], force=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            pass
        if self._client is not None:
            self._client.close()
            self._client = None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill_leftovers(self) -> None:
        """SIGKILL any process of this engine that is still running (shims, containers)."""
        self._wait_gone(self.processes)

    # --- what runs, what is mounted -------------------------------------------------------

    def _dockerd_tree(self) -> list[int]:
        """dockerd (found by its data root on the command line) and its descendants."""
        table = _process_table()
        marker = f"--data-root\0{self.root / 'data'}\0"
        roots = [pid for pid, (_, command) in table.items() if marker in command]
        return _with_descendants(roots, table)

    def processes(self) -> list[int]:
        """Every live process of this engine: dockerd, containerd, the shims (they name this
        engine's containerd socket) and everything below them, i.e. the containers."""
        table = _process_table()
        data_marker = f"--data-root\0{self.root / 'data'}\0"
        exec_marker = f"{self.root / 'exec'}/"
        roots = [
            pid
            for pid, (_, command) in table.items()
            if data_marker in command or exec_marker in command
        ]
        return _with_descendants(roots, table)

    def mounts(self) -> list[str]:
        """Mount points at or below `root`, deepest first."""
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
            for line in mountinfo:
                point = line.split()[4].replace("\\040", " ")
                if point == str(self.root) or point.startswith(f"{self.root}/"):
                    found.append(point)
        return sorted(set(found), key=lambda point: point.count("/"), reverse=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    # --- set-up and teardown --------------------------------------------------------------

    def load_images(self, images: tuple[str, ...] = IMAGES) -> None:
        """Copy `images` from the main engine: `docker save ... | docker -H OURS load`."""
        saver = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        assert saver.stdout is not None
        loaded = subprocess.run(
            ["docker", "-H", self.address, "load"],
            stdin=saver.stdout,
            capture_output=True,
            text=True,
            timeout=120,
        )
        saver.stdout.close()
        saved = saver.wait(timeout=120)
        if saved != 0 or loaded.returncode != 0:
            pytest.fail(
                f"could not copy {' '.join(images)} into the second engine (save exited {saved}, "
                f"load {loaded.returncode}): {loaded.stderr.strip()}",
                pytrace=False,
            )

    def teardown(self) -> None:
        """Stop the engine, kill what is left of it, unmount what it mounted, remove its
        directory and network namespace. Fail if a process or a mount of it remains."""
        self.stop()
        self.kill_leftovers()
        for point in self.mounts():
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
        left_mounted = self.mounts()
        if not left_mounted:
            shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        left_running = self.processes()
        assert not left_running, f"left running: {_describe(left_running)}"
        assert not left_mounted, f"left mounted: {left_mounted}"
        assert not Path(f"/var/run/netns/{self.netns}").exists(), f"netns {self.netns} left"


def start_second_engine() -> SecondEngine:
    """Make a network namespace and a directory, start dockerd there, load the helper images.
    Fail (never skip) if a tool is missing or the engine does not come up."""
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is missing: the engine-death tests need it", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the engine-death tests start a dockerd: they need root", pytrace=False)
    netns = f"opskit-e2-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix=f"{netns}-", dir="/tmp"))
    engine = SecondEngine(root, netns)
    made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"ip netns add {netns} failed: {made.stderr.strip()}", pytrace=False)
    try:
        engine.start()
        engine.load_images()
    except BaseException:
        engine.teardown()
        raise
    return engine


@pytest.fixture(scope="module")
def second_engine() -> Iterator[SecondEngine]:
    """A second engine for this module's tests, started once; stopped and removed afterwards,
    with a check that no process, mount or namespace of it is left."""
    engine = start_second_engine()
    try:
        yield engine
    finally:
        engine.teardown()


# --- /proc ----------------------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, NUL-separated command line) of every process that is not a zombie."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):
            continue
        table[int(entry)] = (int(fields[1]), command)
    return table


def _with_descendants(roots: list[int], table: dict[int, tuple[int, str]]) -> list[int]:
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in table.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return sorted(found)


def _signal_all(pids: set[int], signal_number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal_number)
        except ProcessLookupError:
            pass


def _describe(pids: list[int]) -> str:
    table = _process_table()
    return "; ".join(
        f"{pid} {table.get(pid, (0, '?'))[1].replace(chr(0), ' ')[:160]}" for pid in pids
    )
