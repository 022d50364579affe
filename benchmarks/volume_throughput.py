"""Benchmark: opskit's volume backup and restore against the host's tar+zstd and against restic.

Creates a ~1.1 GiB volume (4 x 128 MiB random, 4 x 128 MiB text logs, 10,000 small files; scaled
by --scale), then runs --repeat rounds, each one interleaved in this order:
  backup:  host `tar -cf - . | zstd -T0 -3 > FILE`
           `opskit volume backup VOL --to DIR`
           restic: `restic init` into a fresh repository (untimed), then `restic backup MOUNTPOINT`
           (timed: a first backup)
  restore: host `zstd -dc FILE | tar -x -C NEW_VOLUME`
           `opskit volume restore VOL --from DIR --into NEW_VOLUME`
           `restic restore latest --target NEW_VOLUME`
Every restore goes into a fresh, empty volume, and nothing is deleted just before a timed step: a
round's archives, repository and restored volumes are removed at the start of the next round
(before its first backup) or at the end. After each round, every restored tree is checked against
the source (files, directories, bytes); an incomplete restore stops the benchmark.

Prints, per step and tool, the median, min and max seconds; the ratios by median opskit/host and
opskit/restic; and opskit's peak RSS. Without `restic` on PATH (Debian's `restic` package), its
comparison is left out and said so. Then times opskit's start-up, rounds interleaved: `opskit
--help` and `opskit volume list --from EMPTY_DIR` against `python -c pass` (median, min, max);
`--startup-only` times just that.

Targets (issue 13), by median:
  backup  <= 1.10x the host's `tar | zstd -T0 -3`;
  restore <= 1.00x restic's restore, and <= 1.00x the host's `zstd -d | tar -x`;
  opskit's peak RSS <= 150 MB;
  `opskit --help` <= 0.30 s, `opskit volume list --from EMPTY_DIR` <= 0.35 s.
Run as root on a machine with the engine up: `python benchmarks/volume_throughput.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

MIB = 1 << 20
WORDS = (
    "GET POST PUT /api/v1/users /api/v1/orders /healthz 200 201 204 301 404 500 INFO WARN ERROR "
    "DEBUG request completed in ms user_id session trace span db query cache hit miss upstream "
    "timeout retry backend frontend worker queue job started finished failed payload bytes"
).split()


def make_volume(client: docker.DockerClient, name: str, scale: float) -> Path:
    """Create and fill the benchmark volume; return its host mountpoint."""
    volume = client.volumes.create(name)
    root = Path(volume.attrs["Mountpoint"])
    chunk = int(128 * MIB * scale)
    rng = random.Random(42)
    for index in range(4):
        (root / f"random-{index}.bin").write_bytes(os.urandom(chunk))
        with open(root / f"app-{index}.log", "w") as log:
            written = 0
            while written < chunk:
                line = " ".join(rng.choices(WORDS, k=12)) + f" {rng.randrange(10**9)}\n"
                block = line * 1 + "".join(
                    " ".join(rng.choices(WORDS, k=12)) + f" {rng.randrange(10**9)}\n"
                    for _ in range(999)
                )
                log.write(block)
                written += len(block)
    small = root / "small"
    for directory_index in range(100):
        directory = small / f"d{directory_index:03}"
        directory.mkdir(parents=True)
        for file_index in range(100):
            (directory / f"f{file_index:03}.txt").write_bytes(os.urandom(rng.randrange(64, 4096)))
    return root


def timed(
    command: list[str] | str, shell: bool = False, env: dict[str, str] | None = None
) -> tuple[float, int, str]:
    """Run a command; return (seconds, its peak RSS in bytes, stdout).

    Dirty pages of the previous step are flushed first, so no step pays for another's writes.
    The RSS comes from a small `rss-probe` parent: Linux carries a process's peak RSS across
    fork+exec, so a child forked straight from this (large) benchmark process would report
    this process's size, not its own.
    """
    os.sync()
    rss_file = tempfile.NamedTemporaryFile(prefix="opskit-rss-", delete=False)
    rss_file.close()
    probe = [sys.executable, "-c", RSS_PROBE, rss_file.name]
    argv = [*probe, "sh", "-c", command] if shell else [*probe, *command]
    try:
        start = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, env=env)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"command failed: {command}")
        peak = int(Path(rss_file.name).read_text() or 0)
    finally:
        os.unlink(rss_file.name)
    return elapsed, peak, result.stdout


# Runs argv[2:] as a child and writes the child's peak RSS (bytes) to argv[1]. The probe is a
# fresh, small interpreter, so the child's peak is its own.
RSS_PROBE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def warm_page_cache(mountpoint: Path) -> None:
    """Read the whole volume once, so the first timed backup does not pay for cold reads.

    The archive goes through a pipe: GNU tar skips reading file contents when it writes
    straight to /dev/null."""
    subprocess.run(f"tar -cf - -C {mountpoint} . | cat > /dev/null", shell=True, check=True)


@dataclass(frozen=True)
class TreeTotals:
    files: int
    directories: int
    size: int

    def describe(self) -> str:
        return f"{self.files} files, {self.directories} directories, {self.size} bytes"


def tree_totals(root: Path) -> TreeTotals:
    """Count the regular files, directories (below root) and file bytes of a tree."""
    files = directories = size = 0
    for directory, directory_names, file_names in os.walk(root):
        directories += len(directory_names)
        for file_name in file_names:
            files += 1
            size += os.lstat(os.path.join(directory, file_name)).st_size
    return TreeTotals(files, directories, size)


def check_restore_complete(label: str, restored: Path, expected: TreeTotals) -> None:
    """Stop the benchmark if a restored tree is missing or differs from the source in size."""
    if not restored.is_dir():
        raise SystemExit(f"restore incomplete: {label}: {restored} does not exist")
    found = tree_totals(restored)
    if found != expected:
        raise SystemExit(
            f"restore incomplete: {label} in {restored}: {found.describe()}, "
            f"expected {expected.describe()}"
        )


def directory_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def restic_version() -> str | None:
    """`restic version`'s line, or None when restic is not on PATH."""
    if shutil.which("restic") is None:
        return None
    result = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


RESTIC_PASSWORD = "opskit-benchmark"


def restic_environment(cache: Path) -> dict[str, str]:
    """restic's environment: the repository password, and a cache inside the round's work
    directory (restic caches local repositories too, by default under ~/.cache/restic)."""
    return dict(os.environ, RESTIC_PASSWORD=RESTIC_PASSWORD, RESTIC_CACHE_DIR=str(cache))


HOST, OPSKIT, RESTIC = "host", "opskit", "restic"
BACKUP, RESTORE = "backup", "restore"
TOOL_LABELS = {
    (BACKUP, HOST): "host tar | zstd -T0 -3",
    (BACKUP, OPSKIT): "opskit volume backup",
    (BACKUP, RESTIC): "restic backup (first)",
    (RESTORE, HOST): "host zstd -d | tar -x",
    (RESTORE, OPSKIT): "opskit volume restore",
    (RESTORE, RESTIC): "restic restore",
}
# Targets (issue 13) for opskit's median over another tool's median, by (step, tool).
RATIO_TARGETS = {(BACKUP, HOST): 1.10, (RESTORE, HOST): 1.00, (RESTORE, RESTIC): 1.00}
RSS_TARGET_MB = 150


@dataclass
class Bench:
    """The source volume, what the rounds measured, and every volume created (for clean-up)."""

    client: docker.DockerClient
    name: str
    mountpoint: Path
    work: Path
    tools: tuple[str, ...]
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    peak_rss: dict[tuple[str, str], int] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    backup_record: dict | None = None
    restic_repository_size: int = 0

    def record(self, step: str, tool: str, seconds: float, rss: int) -> None:
        self.seconds.setdefault((step, tool), []).append(seconds)
        self.peak_rss[(step, tool)] = max(self.peak_rss.get((step, tool), 0), rss)

    def fresh_volume(self, volume_name: str) -> Path:
        """Create an empty volume (untimed) and return its mountpoint."""
        self.volumes.append(volume_name)
        return Path(self.client.volumes.create(volume_name).attrs["Mountpoint"])

    def mountpoint_of(self, volume_name: str) -> Path:
        return Path(self.client.volumes.get(volume_name).attrs["Mountpoint"])

    def remove_volume(self, volume_name: str) -> None:
        try:
            self.client.volumes.get(volume_name).remove(force=True)
        except docker.errors.NotFound:
            pass


@dataclass
class Round:
    """One round's archives and repository (under `directory`) and its restore targets."""

    index: int
    directory: Path
    bench: Bench

    @property
    def host_archive(self) -> Path:
        return self.directory / "host.tar.zst"

    @property
    def opskit_backups(self) -> Path:
        return self.directory / "opskit"

    @property
    def restic_repository(self) -> Path:
        return self.directory / "restic-repository"

    @property
    def restic_env(self) -> dict[str, str]:
        return restic_environment(self.directory / "restic-cache")

    def target(self, tool: str) -> str:
        """The name of this round's restore volume for a tool."""
        return f"{self.bench.name}-r{self.index}-{tool}"

    def remove(self) -> None:
        for tool in self.bench.tools:
            self.bench.remove_volume(self.target(tool))
        shutil.rmtree(self.directory, ignore_errors=True)


OPSKIT_COMMAND = [sys.executable, "-m", "opskit"]


def backup_with_host(bench: Bench, round_: Round) -> None:
    seconds, rss, _ = timed(
        f"tar -cf - -C {bench.mountpoint} . | zstd -q -T0 -3 > {round_.host_archive}", shell=True
    )
    bench.record(BACKUP, HOST, seconds, rss)


def backup_with_opskit(bench: Bench, round_: Round) -> None:
    seconds, rss, out = timed(
        [*OPSKIT_COMMAND, "volume", "backup", bench.name, "--to", str(round_.opskit_backups)]
        + ["--json"]
    )
    bench.record(BACKUP, OPSKIT, seconds, rss)
    bench.backup_record = json.loads(out)


def backup_with_restic(bench: Bench, round_: Round) -> None:
    """Initialise a fresh repository (untimed), then time restic's first backup into it."""
    repository = ["restic", "--repo", str(round_.restic_repository)]
    subprocess.run(
        [*repository, "init"], env=round_.restic_env, check=True, stdout=subprocess.DEVNULL
    )
    seconds, rss, _ = timed([*repository, "backup", str(bench.mountpoint)], env=round_.restic_env)
    bench.record(BACKUP, RESTIC, seconds, rss)


def restore_with_host(bench: Bench, round_: Round) -> None:
    target = bench.fresh_volume(round_.target(HOST))
    seconds, rss, _ = timed(f"zstd -q -dc {round_.host_archive} | tar -x -C {target}", shell=True)
    bench.record(RESTORE, HOST, seconds, rss)


def restore_with_opskit(bench: Bench, round_: Round) -> None:
    """opskit creates the target volume itself (`--into` a name that does not exist yet)."""
    target = round_.target(OPSKIT)
    bench.volumes.append(target)
    seconds, rss, _ = timed(
        [*OPSKIT_COMMAND, "volume", "restore", bench.name, "--from", str(round_.opskit_backups)]
        + ["--into", target, "--json"]
    )
    bench.record(RESTORE, OPSKIT, seconds, rss)


def restore_with_restic(bench: Bench, round_: Round) -> None:
    target = bench.fresh_volume(round_.target(RESTIC))
    seconds, rss, _ = timed(
        ["restic", "--repo", str(round_.restic_repository), "restore", "latest"]
        + ["--target", str(target)],
        env=round_.restic_env,
    )
    bench.record(RESTORE, RESTIC, seconds, rss)


BACKUPS = {HOST: backup_with_host, OPSKIT: backup_with_opskit, RESTIC: backup_with_restic}
RESTORES = {HOST: restore_with_host, OPSKIT: restore_with_opskit, RESTIC: restore_with_restic}


def restored_tree(bench: Bench, round_: Round, tool: str) -> Path:
    """Where a tool's restore put the volume's contents: restic recreates the source's absolute
    path under its target."""
    root = bench.mountpoint_of(round_.target(tool))
    return root / bench.mountpoint.relative_to("/") if tool == RESTIC else root


def verify_round(bench: Bench, round_: Round, expected: TreeTotals) -> None:
    for tool in bench.tools:
        label = f"round {round_.index + 1}, {TOOL_LABELS[(RESTORE, tool)]}"
        check_restore_complete(label, restored_tree(bench, round_, tool), expected)
    if RESTIC in bench.tools:
        bench.restic_repository_size = directory_size(round_.restic_repository)


def run_round(bench: Bench, index: int, expected: TreeTotals) -> Round:
    """All backups, then all restores, in the same tool order; then check the restores."""
    round_ = Round(index, bench.work / f"round-{index}", bench)
    round_.directory.mkdir()
    for tool in bench.tools:
        BACKUPS[tool](bench, round_)
    for tool in bench.tools:
        RESTORES[tool](bench, round_)
    verify_round(bench, round_, expected)
    return round_


def run_rounds(bench: Bench, rounds: int, expected: TreeTotals) -> None:
    """Run the rounds; a round's leftovers are removed at the start of the next one."""
    previous: Round | None = None
    try:
        for index in range(rounds):
            if previous is not None:
                previous.remove()
            print(f"round {index + 1} of {rounds} ...", file=sys.stderr)
            previous = run_round(bench, index, expected)
    finally:
        if previous is not None:
            previous.remove()


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):6.2f}s  min {min(values):6.2f}s  "
        f"max {max(values):6.2f}s"
    )


def median_of(bench: Bench, step: str, tool: str) -> float:
    return statistics.median(bench.seconds[(step, tool)])


def ratio_line(bench: Bench, step: str, tool: str) -> str:
    """opskit's median over a tool's median, with its target and whether it is met."""
    ratio = median_of(bench, step, OPSKIT) / median_of(bench, step, tool)
    line = f"{step + ':':<9}opskit/{tool:<7} {ratio:5.2f}x"
    target = RATIO_TARGETS.get((step, tool))
    if target is None:
        return line + " (no target)"
    verdict = "met" if ratio <= target else "MISSED"
    return line + f" (target <= {target:.2f}x: {verdict})"


def print_step(bench: Bench, step: str) -> None:
    for tool in bench.tools:
        print(
            f"{step + ':':<9}{TOOL_LABELS[(step, tool)]:<24} {spread(bench.seconds[(step, tool)])}"
        )
    for tool in bench.tools:
        if tool != OPSKIT:
            print(ratio_line(bench, step, tool))


def print_data(bench: Bench, source: TreeTotals, rounds: int, restic: str | None) -> None:
    record = bench.backup_record
    assert record is not None
    line = (
        f"data: {source.size / MIB:.0f} MiB in the volume ({source.files} files), opskit archive "
        f"{record['size'] / MIB:.0f} MiB (zstd -3), transfer {record['transfer']}"
    )
    if restic is not None:
        line += f", restic repository {bench.restic_repository_size / MIB:.0f} MiB"
    print(line + f"; {rounds} rounds, interleaved")
    if restic is None:
        print(
            "restic: left out of the comparison, because `restic` is not on PATH "
            "(install Debian's restic package to include it)"
        )
    else:
        print(f"restic: {restic}")


def print_memory(bench: Bench) -> None:
    backup = bench.peak_rss[(BACKUP, OPSKIT)]
    restore = bench.peak_rss[(RESTORE, OPSKIT)]
    peak = max(backup, restore)
    verdict = "met" if peak <= RSS_TARGET_MB * 1e6 else "MISSED"
    line = (
        f"opskit peak RSS: {peak / 1e6:.0f} MB (target <= {RSS_TARGET_MB} MB: {verdict}; "
        f"backup {backup / 1e6:.0f} MB, restore {restore / 1e6:.0f} MB)"
    )
    if RESTIC in bench.tools:
        line += (
            f"; restic: backup {bench.peak_rss[(BACKUP, RESTIC)] / 1e6:.0f} MB, "
            f"restore {bench.peak_rss[(RESTORE, RESTIC)] / 1e6:.0f} MB"
        )
    print(line)


def print_results(bench: Bench, source: TreeTotals, rounds: int, restic: str | None) -> None:
    print_data(bench, source, rounds, restic)
    print_step(bench, BACKUP)
    print_step(bench, RESTORE)
    print_memory(bench)
    print(f"restores verified: every round, {source.describe()} each")
    runs = {
        f"{step} {tool}": [round(v, 2) for v in vs] for (step, tool), vs in bench.seconds.items()
    }
    print("all runs: " + json.dumps(runs))


# Start-up targets (issue 13), in seconds, by command label.
STARTUP_TARGETS = {"opskit --help": 0.30, "opskit volume list --from EMPTY_DIR": 0.35}


def startup_times(rounds: int) -> dict[str, list[float]]:
    """Time `python -c pass`, `opskit --help` and `opskit volume list --from EMPTY_DIR`, one of
    each per round (interleaved, so a change in the machine's load hits all three); return the
    seconds of every run by label. One round first, untimed, writes the bytecode caches."""
    empty = Path(tempfile.mkdtemp(prefix="opskit-bench-empty-"))
    opskit = [sys.executable, "-m", "opskit"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "opskit --help": [*opskit, "--help"],
        "opskit volume list --from EMPTY_DIR": [*opskit, "volume", "list", "--from", str(empty)],
    }
    environment = dict(os.environ, OPSKIT_CONFIG=os.devnull)
    times: dict[str, list[float]] = {label: [] for label in commands}
    try:
        for round_index in range(rounds + 1):
            for label, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, capture_output=True, env=environment, check=True)
                if round_index > 0:
                    times[label].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    return times


def print_startup(times: dict[str, list[float]]) -> None:
    """One line per command: median, min, max, and the median against `python -c pass`."""
    baseline = statistics.median(times["python -c pass"])
    for label, values in times.items():
        median = statistics.median(values)
        target = STARTUP_TARGETS.get(label)
        print(
            f"start-up: {label:<36} median {median:.3f}s  min {min(values):.3f}s  "
            f"max {max(values):.3f}s  {median / baseline:4.1f}x python -c pass"
            + (f" (target <= {target:.2f}s)" if target is not None else "")
        )
    print(f"start-up: {len(times['python -c pass'])} rounds, interleaved")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = ~1.1 GiB")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument(
        "--workdir", default="/var/tmp", help="where archives and repositories are written"
    )
    parser.add_argument(
        "--startup-only", action="store_true", help="time only the start-up (no engine needed)"
    )
    parser.add_argument("--startup-rounds", type=int, default=10, help="start-up rounds")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    if arguments.startup_only:
        print_startup(startup_times(arguments.startup_rounds))
        return

    restic = restic_version()
    tools = (HOST, OPSKIT) if restic is None else (HOST, OPSKIT, RESTIC)
    if restic is None:
        print("restic is not on PATH: its comparison is left out", file=sys.stderr)
    client = docker.from_env()
    name = f"opskit-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-", dir=arguments.workdir))
    bench: Bench | None = None
    try:
        print(f"creating volume {name} ...", file=sys.stderr)
        bench = Bench(client, name, make_volume(client, name, arguments.scale), work, tools)
        source = tree_totals(bench.mountpoint)
        warm_page_cache(bench.mountpoint)
        run_rounds(bench, arguments.repeat, source)
        print_results(bench, source, arguments.repeat, restic)
        print_startup(startup_times(arguments.startup_rounds))
    finally:
        if bench is not None:
            for volume_name in bench.volumes:
                bench.remove_volume(volume_name)
        try:
            client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
