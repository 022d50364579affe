"""Benchmark: backups to an S3 target on loopback (moto_server), throughput and peak RSS.

Starts its own `moto_server` on a free 127.0.0.1 port and a fresh bucket, then measures, each in
a child process whose peak RSS is read from `wait4` (moto_server keeps every object in its own
memory: its RSS is not opskit's and is not counted):

  storage  streaming --size bytes through `S3Storage.create()` in 1 MiB writes (the raw
           multipart writer, no Docker, no compression), then reading it back through `open()`;
           with --assembled-after N, parts after the N-th are assembled by server-side copy
           (as the default plan does after part 2000, past 9.8 GiB; here in parts of 100 MiB
           instead of 1 GiB), so a 1 GiB run measures the memory of a far larger archive
  cli      `opskit volume backup VOL --to s3://bucket/prefix --json` of a volume holding
           --size bytes of random data (incompressible: the archive is as large as the data),
           then `opskit volume restore VOL --from s3://... --into NEW --json`

and prints one line per run plus a JSON summary: MB/s (10^6 bytes per second, of archive bytes),
peak RSS in MiB, the part size and concurrency used, and the number of parts. The numbers are
bounded by moto_server, a single-process Python server: a real S3 endpoint is usually slower per
connection and faster in aggregate.

Target (issue 3): peak RSS <= 150 MB at default settings for a backup of >= 1 GiB.
Run as root with the engine up: `python benchmarks/s3_throughput.py [--size 1GiB] [--mode all]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opskit.storage.s3.plan import PartPlan, concurrency_for  # noqa: E402 - after the path

MIB = 1 << 20
REPOSITORY = Path(__file__).resolve().parents[1]
RSS_TARGET_MB = 150

STORAGE_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    from opskit.config.targets import TargetConfig
    from opskit.log import configure_logging
    from opskit.storage.s3 import S3Storage
    from opskit.storage.s3.plan import MAX_PARTS, PartPlan, concurrency_for

    configure_logging(0)
    url, size, part_size, concurrency = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    assembled_after = int(sys.argv[5])
    target = TargetConfig(
        url=url,
        part_size=int(part_size) if part_size != "default" else None,
        max_concurrency=int(concurrency) if concurrency != "default" else None,
    )
    storage = S3Storage.from_target(target)
    if assembled_after:  # the default plan's shape, scaled down: 100 MiB assembled parts
        piece = storage.plan.piece_size
        storage.plan = PartPlan(
            piece, ((assembled_after, piece), (MAX_PARTS - assembled_after, 20 * piece))
        )
    block = os.urandom(16 * 1024 * 1024)  # repeated: generating 1 GiB of randomness costs more
    view = memoryview(block)
    start = time.perf_counter()
    written = 0
    with storage.create("bench/archive.tar.zst") as writer:
        while written < size:
            for offset in range(0, len(block), 1024 * 1024):
                if written >= size:
                    break
                piece = view[offset : offset + min(1024 * 1024, size - written)]
                written += writer.write(piece)
    parts = writer._parts_closed  # after commit: the last part counts too
    upload = time.perf_counter() - start
    start = time.perf_counter()
    digest = hashlib.sha256()
    with storage.open("bench/archive.tar.zst") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    download = time.perf_counter() - start
    print(json.dumps({"bytes": written, "upload_s": upload, "download_s": download,
                      "parts": parts, "piece_size": storage.plan.piece_size,
                      "assembled_part_size": storage.plan.part_size(MAX_PARTS),
                      "concurrency": concurrency_for(storage.plan.piece_size,
                                                     target.max_concurrency)}))
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start moto_server on a free port; return it and its endpoint once it answers."""
    executable = shutil.which("moto_server")
    if executable is None:
        raise SystemExit("moto_server is missing: pip install 'moto[server]'")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log_path, "wb"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return process, endpoint
        except urllib.error.HTTPError:
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"moto_server did not answer on {endpoint}")


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str, float]:
    """Run a command; return (seconds, its peak RSS in MiB, stdout, its CPU seconds).

    Fail on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return elapsed, usage.ru_maxrss / 1024, stdout, usage.ru_utime + usage.ru_stime


def parse_size(text: str) -> int:
    units = {"gib": 1 << 30, "mib": MIB, "g": 1 << 30, "m": MIB, "": 1}
    number = text.rstrip("GgMmIiBb ")
    unit = text[len(number) :].strip().lower()
    return int(float(number) * units[unit])


def bench_storage(env, bucket, size, part_size, concurrency, assembled_after) -> dict:
    elapsed, rss, stdout, cpu = run_measured(
        [
            sys.executable,
            "-c",
            STORAGE_SCRIPT,
            f"s3://{bucket}/storage",
            str(size),
            part_size,
            concurrency,
            str(assembled_after),
        ],
        env,
    )
    result = json.loads(stdout)
    return {
        "mode": "storage",
        "bytes": result["bytes"],
        "upload_mb_s": result["bytes"] / result["upload_s"] / 1e6,
        "download_mb_s": result["bytes"] / result["download_s"] / 1e6,
        "peak_rss_mib": rss,
        "part_size_mib": result["piece_size"] / MIB,
        "concurrency": result["concurrency"],
        "parts": result["parts"],
        "assembled_after": assembled_after,
        "assembled_part_size_mib": result["assembled_part_size"] / MIB,
        "process_s": elapsed,
        "cpu_s": cpu,
    }


def bench_cli(env, bucket, size) -> dict:
    import docker  # only this mode needs the engine

    client = docker.from_env()
    volume = f"opskit-bench-{uuid.uuid4().hex[:8]}"
    restored = f"{volume}-restored"
    client.volumes.create(volume)
    try:
        client.containers.run(
            "busybox:stable",
            [
                "sh",
                "-c",
                f"head -c {size // 4} /dev/urandom > /v/a; cp /v/a /v/b; "
                f"head -c {size // 4} /dev/urandom > /v/c; cp /v/c /v/d",
            ],
            volumes={volume: {"bind": "/v", "mode": "rw"}},
            remove=True,
        )
        opskit = [sys.executable, "-m", "opskit"]
        target = f"s3://{bucket}/cli"
        os.sync()
        backup_s, backup_rss, stdout, backup_cpu = run_measured(
            [*opskit, "volume", "backup", volume, "--to", target, "--json"], env
        )
        record = json.loads(stdout)
        restore_s, restore_rss, _, _ = run_measured(
            [*opskit, "volume", "restore", volume, "--from", target, "--into", restored, "--json"],
            env,
        )
        head = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).head_object(
            Bucket=bucket, Key=f"cli/{record['archive']}"
        )
        parts = int(head["ETag"].strip('"').rpartition("-")[2] or 1)
        return {
            "mode": "cli",
            "bytes": record["size"],
            "upload_mb_s": record["size"] / backup_s / 1e6,
            "download_mb_s": record["size"] / restore_s / 1e6,
            "peak_rss_mib": backup_rss,
            "restore_peak_rss_mib": restore_rss,
            "part_size_mib": PartPlan.default().piece_size / MIB,  # the defaults
            "concurrency": concurrency_for(PartPlan.default().piece_size),
            "parts": parts,
            "process_s": backup_s,
            "cpu_s": backup_cpu,
        }
    finally:
        for name in (volume, restored):
            try:
                client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB", help="bytes to back up (default 1GiB)")
    parser.add_argument("--mode", choices=["storage", "cli", "all"], default="all")
    parser.add_argument("--part-size", default="default", help="bytes, storage mode only")
    parser.add_argument("--concurrency", default="default", help="storage mode only")
    parser.add_argument(
        "--assembled-after",
        type=int,
        default=0,
        help="storage mode only: assemble parts (server-side copy) after this many direct "
        "parts instead of 2000, to measure memory of archives above 9.8 GiB on a small run",
    )
    arguments = parser.parse_args()
    size = parse_size(arguments.size)

    work = Path(tempfile.mkdtemp(prefix="opskit-s3-bench-"))
    moto, endpoint = start_moto(work / "moto.log")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(work / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws-credentials"),
        "PYTHONPATH": str(REPOSITORY),
    }
    os.environ.update({name: env[name] for name in env if name.startswith("AWS_")})
    bucket = f"opskit-bench-{uuid.uuid4().hex[:8]}"
    results = []
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        if arguments.mode in ("storage", "all"):
            results.append(
                bench_storage(
                    env,
                    bucket,
                    size,
                    arguments.part_size,
                    arguments.concurrency,
                    arguments.assembled_after,
                )
            )
        if arguments.mode in ("cli", "all"):
            results.append(bench_cli(env, bucket, size))
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    for result in results:
        peak_mb = result["peak_rss_mib"] * MIB / 1e6
        verdict = "ok" if peak_mb <= RSS_TARGET_MB else "OVER"
        restore_rss = result.get("restore_peak_rss_mib")
        print(
            f"{result['mode']:8} {result['bytes'] / MIB:6.0f} MiB  "
            f"backup {result['upload_mb_s']:6.1f} MB/s, peak RSS {result['peak_rss_mib']:5.1f} MiB "
            f"= {peak_mb:5.1f} MB ({verdict} vs {RSS_TARGET_MB} MB)  "
            f"restore {result['download_mb_s']:6.1f} MB/s"
            + (f", peak RSS {restore_rss:5.1f} MiB" if restore_rss else "")
            + f"  part {result['part_size_mib']:.0f} MiB x {result['concurrency']} in flight, "
            f"{result['parts']} parts, {result['cpu_s']:.1f} CPU s"
            + (
                f", parts from {result['assembled_after'] + 1} assembled from pieces "
                f"({result['assembled_part_size_mib']:.0f} MiB each)"
                if result.get("assembled_after")
                else ""
            )
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
