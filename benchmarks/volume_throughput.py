"""Benchmark: opskit volume backup/restore against the host's tar+zstd on the same data.

Creates a ~1.1 GiB volume (4 x 128 MiB random, 4 x 128 MiB text logs, 10,000 small files), then
times, in one run and alternating:
  backup:  host `tar -cf - . | zstd -T0 -3 > file`   vs  `opskit volume backup VOL --to DIR`
  restore: host `zstd -dc file | tar -x -C dir`      vs  `opskit volume restore VOL --into NEW`
and prints both ratios (best of --repeat runs each) and opskit's peak RSS.

Then times opskit's start-up, rounds interleaved: `opskit --help` and `opskit volume list --from
EMPTY_DIR` against `python -c pass` (median, min, max); `--startup-only` times just that.

Targets (issue 2): backup <= 1.25x, restore <= 1.35x, peak RSS <= 150 MB.
Targets (issue 13): `opskit --help` <= 0.30 s, `opskit volume list --from EMPTY_DIR` <= 0.35 s.
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


def timed(command: list[str] | str, shell: bool = False) -> tuple[float, int, str]:
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
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"command failed: {command}")
    peak = int(Path(rss_file.name).read_text() or 0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = ~1.1 GiB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", default="/var/tmp", help="where archives are written")
    parser.add_argument(
        "--startup-only", action="store_true", help="time only the start-up (no engine needed)"
    )
    parser.add_argument("--startup-rounds", type=int, default=10, help="start-up rounds")
    arguments = parser.parse_args()
    if arguments.startup_only:
        print_startup(startup_times(arguments.startup_rounds))
        return

    client = docker.from_env()
    name = f"opskit-bench-{uuid.uuid4().hex[:8]}"
    restored = [f"{name}-restored-{index}" for index in range(arguments.repeat)]
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-", dir=arguments.workdir))
    opskit = [sys.executable, "-m", "opskit"]
    try:
        print(f"creating volume {name} ...", file=sys.stderr)
        mountpoint = make_volume(client, name, arguments.scale)
        size = sum(path.stat().st_size for path in mountpoint.rglob("*") if path.is_file())
        subprocess.run(["tar", "-cf", "/dev/null", "-C", str(mountpoint), "."], check=True)
        host_archive = work / "host.tar.zst"
        results: dict[str, list[float]] = {
            key: [] for key in ("host_b", "ops_b", "host_r", "ops_r")
        }
        peak_rss = 0
        rss_by_step: dict[str, int] = {"backup": 0, "restore": 0}
        record = None
        for index in range(arguments.repeat):
            seconds, _, _ = timed(
                f"tar -cf - -C {mountpoint} . | zstd -q -T0 -3 > {host_archive}", shell=True
            )
            results["host_b"].append(seconds)
            backups = work / f"opskit-{index}"
            seconds, rss, out = timed(
                [*opskit, "volume", "backup", name, "--to", str(backups), "--json"]
            )
            results["ops_b"].append(seconds)
            peak_rss = max(peak_rss, rss)
            rss_by_step["backup"] = max(rss_by_step["backup"], rss)
            record = json.loads(out)

            host_target = Path(client.volumes.create(f"{name}-host-{index}").attrs["Mountpoint"])
            seconds, _, _ = timed(
                f"zstd -q -dc {host_archive} | tar -x -C {host_target}", shell=True
            )
            results["host_r"].append(seconds)
            client.volumes.get(f"{name}-host-{index}").remove()
            seconds, rss, _ = timed(
                [
                    *opskit,
                    "volume",
                    "restore",
                    name,
                    "--from",
                    str(backups),
                    "--into",
                    restored[index],
                    "--json",
                ]
            )
            results["ops_r"].append(seconds)
            peak_rss = max(peak_rss, rss)
            rss_by_step["restore"] = max(rss_by_step["restore"], rss)
            shutil.rmtree(backups)
        best = {key: min(values) for key, values in results.items()}
        backup_ratio = best["ops_b"] / best["host_b"]
        restore_ratio = best["ops_r"] / best["host_r"]
        assert record is not None
        print(
            f"data: {size / MIB:.0f} MiB in the volume, archive {record['size'] / MIB:.0f} MiB "
            f"(zstd -3), transfer {record['transfer']}, best of {arguments.repeat}"
        )
        print(
            f"backup:  host tar|zstd {best['host_b']:.2f}s  opskit {best['ops_b']:.2f}s  "
            f"ratio {backup_ratio:.2f}x (target <= 1.25x)"
        )
        print(
            f"restore: host zstd|tar {best['host_r']:.2f}s  opskit {best['ops_r']:.2f}s  "
            f"ratio {restore_ratio:.2f}x (target <= 1.35x)"
        )
        print(
            f"opskit peak RSS: {peak_rss / 1e6:.0f} MB (target <= 150 MB; backup "
            f"{rss_by_step['backup'] / 1e6:.0f} MB, restore {rss_by_step['restore'] / 1e6:.0f} MB)"
        )
        print(
            "all runs: " + json.dumps({k: [round(v, 2) for v in vs] for k, vs in results.items()})
        )
        print_startup(startup_times(arguments.startup_rounds))
    finally:
        for volume_name in [name, *restored]:
            try:
                client.volumes.get(volume_name).remove(force=True)
            except docker.errors.NotFound:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
