"""Benchmark: `opskit ports audit` over 200 generated compose files.

Writes 200 compose files (10 services each: short and long syntax, IPv6, host pools, ranges of
up to 500 ports, `${VAR:-default}` interpolation from a `.env`, `expose:`, a host-network
service, some invalid entries) and times:

  1. 200 audits, one per file, in one process (`run_audit_ports`, no engine);
  2. one `python -m opskit ports audit` run with all 200 files merged by -f (no engine);
  3. the same run with --runtime, when an engine answers.

Target (issue 4): auditing 200 compose files takes under 10 s in total.
Run: `python benchmarks/ports_audit.py` (add --keep to leave the files in place).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from opskit.actions.audit_ports import AuditRequest, run_audit_ports  # noqa: E402
from opskit.engine.client import engine_answers  # noqa: E402

FILES = 200
SERVICES_PER_FILE = 10
TARGET_SECONDS = 10.0


def port_entry(rng: random.Random, base: int) -> str | dict:
    kind = rng.randrange(10)
    port = base + rng.randrange(1000)
    if kind == 0:
        return {"target": 80, "published": port, "host_ip": "127.0.0.1", "protocol": "tcp"}
    if kind == 1:
        return f"[::1]:{port}:{port}/udp"
    if kind == 2:
        return f"{port}-{port + 10}:8080"
    if kind == 3:
        width = rng.choice([5, 50, 500])
        return f"{port}-{port + width - 1}:{port}-{port + width - 1}"
    if kind == 4:
        return f"${{BIND_IP:-127.0.0.1}}:${{WEB_PORT:-{port}}}:80"
    if kind == 5:
        return rng.choice(["5432:5432", "6379:6379", "22:22", "2375:2375", "80:80"])
    if kind == 6:
        return port
    if kind == 7:
        return rng.choice(["not-a-port", "70000:80", "80:8000-8001"])
    return f"{port}:{rng.choice([80, 443, 8080, 9000])}"


def compose_text(rng: random.Random, index: int) -> str:
    lines = [f"name: bench{index}", "services:"]
    for service in range(SERVICES_PER_FILE):
        lines.append(f"  svc{service}:")
        lines.append("    image: busybox:stable")
        if service == SERVICES_PER_FILE - 1:
            lines.append("    network_mode: host")
            lines.append("    expose: [9100, '9200-9210']")
            continue
        lines.append("    ports:")
        for _ in range(rng.randrange(1, 6)):
            entry = port_entry(rng, 10000 + 100 * service)
            if isinstance(entry, dict):
                lines.append(f"      - target: {entry['target']}")
                lines.append(f"        published: {entry['published']}")
                lines.append(f"        host_ip: {entry['host_ip']}")
                lines.append(f"        protocol: {entry['protocol']}")
            elif isinstance(entry, int):
                lines.append(f"      - {entry}")
            else:
                lines.append(f'      - "{entry}"')
        lines.append("    expose: ['3000', 3001]")
    return "\n".join(lines) + "\n"


def write_files(directory: Path) -> list[Path]:
    rng = random.Random(4)
    (directory / ".env").write_text("WEB_PORT=18080\n# BIND_IP is left unset on purpose\n")
    paths = []
    for index in range(FILES):
        path = directory / f"compose-{index:03}.yaml"
        path.write_text(compose_text(rng, index))
        paths.append(path)
    return paths


def time_in_process(paths: list[Path]) -> tuple[float, int, int]:
    start = time.perf_counter()
    mappings = findings = 0
    for path in paths:
        result = run_audit_ports(AuditRequest(files=[path], runtime=False, firewalls=[]))
        mappings += len(result.mappings)
        findings += len(result.findings)
    return time.perf_counter() - start, mappings, findings


def time_cli(paths: list[Path], runtime: bool) -> float:
    arguments = [arg for path in paths for arg in ("-f", str(path))]
    command = [sys.executable, "-m", "opskit", "ports", "audit", *arguments, "--format", "json"]
    command += ["--runtime" if runtime else "--no-runtime", "--firewall", "none"]
    environment = dict(os.environ, OPSKIT_CONFIG=os.devnull)
    start = time.perf_counter()
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=REPOSITORY, env=environment, check=False
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"audit failed ({completed.returncode}): {completed.stderr[-500:]}")
    return elapsed


def verdict(seconds: float) -> str:
    return "under" if seconds < TARGET_SECONDS else "OVER"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    arguments = parser.parse_args()
    # The generated files hold invalid entries on purpose; their warnings are not the point.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    directory = Path(tempfile.mkdtemp(prefix="opskit-ports-bench-"))
    try:
        paths = write_files(directory)
        size = sum(path.stat().st_size for path in paths)
        print(f"{len(paths)} compose files, {size / 1000:.0f} kB, in {directory}")
        seconds, mappings, findings = time_in_process(paths)
        print(
            f"1. {len(paths)} separate audits in one process: {seconds:.2f} s total "
            f"({mappings} mappings, {findings} findings) - {verdict(seconds)} "
            f"{TARGET_SECONDS:.0f} s"
        )
        merged = time_cli(paths, runtime=False)
        print(
            f"2. one CLI run, {len(paths)} files merged, --no-runtime: {merged:.2f} s - "
            f"{verdict(merged)} {TARGET_SECONDS:.0f} s"
        )
        worst = max(seconds, merged)
        if engine_answers():
            with_engine = time_cli(paths, runtime=True)
            print(
                f"3. the same with --runtime: {with_engine:.2f} s - "
                f"{verdict(with_engine)} {TARGET_SECONDS:.0f} s"
            )
            worst = max(worst, with_engine)
        else:
            print("3. skipped: no engine answers")
        print(f"result: {'PASS' if worst < TARGET_SECONDS else 'FAIL'} (slowest {worst:.2f} s)")
        return 0 if worst < TARGET_SECONDS else 1
    finally:
        if arguments.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
