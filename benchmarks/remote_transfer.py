"""Benchmark: the remote transfer (`--transfer remote`) against the FIFO path, on one engine.

Issue 14 asks for a remote byte path at most 2x slower than the FIFO path on the same engine.
Both run on the local engine here (the remote path forced), on the volume of
volume_throughput.py (~1.1 GiB at --scale 1.0), rounds interleaved: backup with fifo, backup
with remote, restore of each into a fresh volume. Every restore is checked complete. Prints the
median, min and max per step and path, and the ratios remote/fifo by median; for contrast, one
backup through the engine's archive endpoint (`--transfer archive-api`) with --archive-api.

Run as root on a machine with the engine up: `python benchmarks/remote_transfer.py`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volume_throughput import (  # noqa: E402 - the sibling benchmark's tools
    check_restore_complete,
    make_volume,
    timed,
    tree_totals,
)

OPSKIT = [sys.executable, "-m", "opskit"]
TARGET_RATIO = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--archive-api", action="store_true")
    arguments = parser.parse_args()
    client = docker.from_env()
    prefix = f"opskit-bench-remote-{uuid.uuid4().hex[:6]}"
    source = f"{prefix}-source"
    made = [source]
    work = Path(tempfile.mkdtemp(prefix=prefix))
    times: dict[tuple[str, str], list[float]] = {}
    try:
        expected = tree_totals(make_volume(client, source, arguments.scale))
        paths = ["fifo", "remote"] + (["archive-api"] if arguments.archive_api else [])
        for round_number in range(arguments.repeat):
            for path in paths:
                store = work / f"{round_number}-{path}"
                seconds, _, _ = timed([*OPSKIT, "volume", "backup", source, "--to", str(store),
                                       "--transfer", path])  # fmt: skip
                times.setdefault(("backup", path), []).append(seconds)
            for path in ("fifo", "remote"):
                into = f"{prefix}-{round_number}-{path}"
                made.append(into)
                seconds, _, _ = timed([*OPSKIT, "volume", "restore", source, "--from",
                                       str(work / f"{round_number}-{path}"), "--into", into,
                                       "--transfer", path])  # fmt: skip
                times.setdefault(("restore", path), []).append(seconds)
                mountpoint = Path(client.volumes.get(into).attrs["Mountpoint"])
                check_restore_complete(f"{path} restore", mountpoint, expected)
        print(f"data: {expected.describe()}, {arguments.repeat} interleaved rounds")
        for (step, path), values in sorted(times.items()):
            print(f"{step:8} {path:12} median {statistics.median(values):6.2f} s "
                  f"(min {min(values):.2f}, max {max(values):.2f})")  # fmt: skip
        for step in ("backup", "restore"):
            ratio = statistics.median(times[(step, "remote")]) / statistics.median(
                times[(step, "fifo")]
            )
            verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
            print(f"{step}: remote/fifo {ratio:.2f}x (target <= {TARGET_RATIO:.1f}x: {verdict})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in made:
            try:
                client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


if __name__ == "__main__":
    main()
