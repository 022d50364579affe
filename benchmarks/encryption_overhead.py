"""Benchmark: the cost of age encryption on a backup and a restore, against the same without it.

Creates the throughput benchmark's volume (see volume_throughput.py; --scale 1.0 = ~1.1 GiB),
then times, alternating in one run, `opskit volume backup` with and without `--encrypt-to` (an
X25519 key made for the run), and the restores of both (with `--identity` for the encrypted
one). Prints min, median and max of each, and the ratios of the medians.

Target (issue 11): encryption's overhead at most 1.10x on the backup.
Run as root on a machine with the engine up: `python benchmarks/encryption_overhead.py`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import docker
import pyrage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volume_throughput import make_volume, timed  # noqa: E402

TARGET_RATIO = 1.10


def summary(values: list[float]) -> str:
    return (
        f"min {min(values):.2f}s  median {statistics.median(values):.2f}s  max {max(values):.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = ~1.1 GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp", help="where archives are written")
    arguments = parser.parse_args()

    client = docker.from_env()
    name = f"opskit-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="opskit-bench-age-", dir=arguments.workdir))
    identity = pyrage.x25519.Identity.generate()
    key_file = work / "key.txt"
    key_file.write_text(str(identity) + "\n")
    recipient = str(identity.to_public())
    opskit = [sys.executable, "-m", "opskit"]
    made: list[str] = [name]
    times: dict[str, list[float]] = {"plain_b": [], "age_b": [], "plain_r": [], "age_r": []}
    peak_rss: dict[str, int] = {key: 0 for key in times}
    try:
        print(f"creating volume {name} ...", file=sys.stderr)
        make_volume(client, name, arguments.scale)
        for index in range(arguments.repeat):
            for kind, extra in (("plain", []), ("age", ["--encrypt-to", recipient])):
                store = work / f"{kind}-{index}"
                seconds, rss, _ = timed(
                    [*opskit, "volume", "backup", name, "--to", str(store), "--json", *extra]
                )
                times[f"{kind}_b"].append(seconds)
                peak_rss[f"{kind}_b"] = max(peak_rss[f"{kind}_b"], rss)
                target = f"{name}-{kind}-{index}"
                made.append(target)
                keys = ["--identity", str(key_file)] if kind == "age" else []
                seconds, rss, _ = timed(
                    [
                        *opskit,
                        "volume",
                        "restore",
                        name,
                        "--from",
                        str(store),
                        "--into",
                        target,
                        "--json",
                        *keys,
                    ]  # fmt: skip
                )
                times[f"{kind}_r"].append(seconds)
                peak_rss[f"{kind}_r"] = max(peak_rss[f"{kind}_r"], rss)
                shutil.rmtree(store)
                client.volumes.get(target).remove()
        backup_ratio = statistics.median(times["age_b"]) / statistics.median(times["plain_b"])
        restore_ratio = statistics.median(times["age_r"]) / statistics.median(times["plain_r"])
        print(f"backup  plain: {summary(times['plain_b'])}")
        print(f"backup  age:   {summary(times['age_b'])}")
        print(f"restore plain: {summary(times['plain_r'])}")
        print(f"restore age:   {summary(times['age_r'])}")
        print(
            "peak RSS: "
            + "  ".join(f"{key} {value / 1e6:.0f} MB" for key, value in peak_rss.items())
        )
        verdict = "meets" if backup_ratio <= TARGET_RATIO else "MISSES"
        print(
            f"encryption overhead (medians of {arguments.repeat}): backup {backup_ratio:.2f}x "
            f"({verdict} the target <= {TARGET_RATIO:.2f}x), restore {restore_ratio:.2f}x"
        )
    finally:
        for volume_name in made:
            try:
                client.volumes.get(volume_name).remove(force=True)
            except docker.errors.NotFound:
                pass
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["sync"], check=False)


if __name__ == "__main__":
    main()
