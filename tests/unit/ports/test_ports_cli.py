"""`opskit ports audit` as a user runs it: output formats, --fail-on and exit codes.

These runs use --no-runtime (or a dead engine address); the real engine is exercised in
tests/integration/test_ports_runtime.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opskit.cli import app

REPOSITORY = Path(__file__).resolve().parents[3]

COMPOSE = """\
services:
  web:
    image: nginx
    ports:
      - 80:80
      - "127.0.0.1:8443:443"
  db:
    image: postgres
    ports:
      - "5432:5432"
"""

CLEAN = """\
services:
  web:
    ports: ["127.0.0.1:8080:80"]
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["OPSKIT_CONFIG"] = os.devnull
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "opskit", "ports", "audit", *args],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=environment,
        timeout=60,
    )


@pytest.fixture
def compose_file(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    return path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("OPSKIT_CONFIG", os.devnull)
    return CliRunner()


def test_json_output_is_one_document_with_mappings_and_findings(compose_file: Path):
    completed = run_cli("-f", str(compose_file), "--no-runtime", "--format", "json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert list(document) == ["mappings", "findings"]
    assert {
        "source": "compose",
        "file": str(compose_file),
        "service": "db",
        "container": None,
        "host_ip": None,
        "host_port": 5432,
        "container_port": 5432,
        "protocol": "tcp",
    } in document["mappings"]
    rules = {(f["rule"], f["service"], f["host_port"]) for f in document["findings"]}
    assert ("sensitive-port-public", "db", 5432) in rules
    assert ("all-interfaces", "web", 80) in rules
    assert ("privileged-host-port", "web", 80) in rules
    assert document["findings"][0]["severity"] == "high"


def test_fail_on_sets_the_exit_code(compose_file: Path):
    assert run_cli("-f", str(compose_file), "--no-runtime", "--fail-on", "high").returncode == 1
    assert run_cli("-f", str(compose_file), "--no-runtime", "--fail-on", "critical").returncode == 0


def test_unreadable_input_exits_2_with_one_line(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("services:\n  web:\n    ports: [80\n")
    completed = run_cli("-f", str(broken), "--no-runtime")
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: ")
    assert f"{broken} line 4" in completed.stderr
    assert "Traceback" not in completed.stderr
    missing = run_cli("-f", str(tmp_path / "missing.yaml"), "--no-runtime")
    assert missing.returncode == 2
    assert "cannot read compose file" in missing.stderr


def test_explicit_runtime_without_engine_exits_2(compose_file: Path, tmp_path: Path):
    dead = f"unix://{tmp_path}/no-engine.sock"
    completed = run_cli("-f", str(compose_file), "--runtime", "--docker-host", dead)
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert "no Docker engine answers" in completed.stderr


def test_default_runtime_is_off_without_engine(compose_file: Path, tmp_path: Path):
    dead = f"unix://{tmp_path}/no-engine.sock"
    completed = run_cli("-f", str(compose_file), "--docker-host", dead, "--format", "json")
    assert completed.returncode == 0, completed.stderr
    assert {m["source"] for m in json.loads(completed.stdout)["mappings"]} == {"compose"}


def test_nothing_to_audit_exits_2(tmp_path: Path):
    completed = run_cli("--no-runtime")
    assert completed.returncode == 2
    assert "nothing to audit" in completed.stderr


def test_bad_option_value_exits_2(runner: CliRunner, compose_file: Path):
    result = runner.invoke(app, ["ports", "audit", "-f", str(compose_file), "--fail-on", "bad"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["ports", "audit", "-f", str(compose_file), "--format", "xml"])
    assert result.exit_code == 2


def test_sarif_output(runner: CliRunner, compose_file: Path):
    result = runner.invoke(
        app, ["ports", "audit", "-f", str(compose_file), "--no-runtime", "--format", "sarif"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["version"] == "2.1.0"
    lines = {
        r["locations"][0]["physicalLocation"]["region"]["startLine"]
        for r in document["runs"][0]["results"]
    }
    assert lines == {5, 10}


def test_table_output_and_summary(runner: CliRunner, compose_file: Path):
    result = runner.invoke(app, ["ports", "audit", "-f", str(compose_file), "--no-runtime"])
    assert result.exit_code == 0, result.output
    assert "sensitive-port-public" in result.stdout
    assert f"{compose_file}:10" in result.stdout
    assert "3 mappings from compose files; 4 findings" in result.stdout


def test_clean_file_passes_fail_on_info(runner: CliRunner, tmp_path: Path):
    path = tmp_path / "compose.yaml"
    path.write_text(CLEAN)
    result = runner.invoke(
        app, ["ports", "audit", "-f", str(path), "--no-runtime", "--fail-on", "info"]
    )
    assert result.exit_code == 0, result.output
    assert "0 findings" in result.stdout


def test_allowlist_from_config(runner: CliRunner, compose_file: Path, tmp_path: Path):
    config = tmp_path / "opskit.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            ports:
              allow:
                - service: web
                  ports: [80]
                - service: db
                  rules: [all-interfaces, sensitive-port-public]
            """
        )
    )
    result = runner.invoke(
        app,
        ["ports", "audit", "-f", str(compose_file), "--no-runtime", "-c", str(config)]
        + ["--fail-on", "info"],
    )
    assert result.exit_code == 0, result.output
    assert "4 allowed by the config" in result.stdout


def test_env_file_and_project_dir_options(runner: CliRunner, tmp_path: Path):
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    (project_dir / ".env").write_text("BIND=0.0.0.0\n")
    prod = tmp_path / "prod.env"
    prod.write_text("BIND=127.0.0.1\n")
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    ports: ['${BIND}:8080:80']\n")
    base = ["ports", "audit", "-f", str(path), "--no-runtime", "--format", "json"]
    from_dir = runner.invoke(app, [*base, "--project-dir", str(project_dir)])
    from_file = runner.invoke(
        app, [*base, "--project-dir", str(project_dir), "--env-file", str(prod)]
    )
    assert json.loads(from_dir.stdout)["mappings"][0]["host_ip"] == "0.0.0.0"
    assert json.loads(from_file.stdout)["mappings"][0]["host_ip"] == "127.0.0.1"


def test_firewall_option(runner: CliRunner, compose_file: Path):
    base = ["ports", "audit", "-f", str(compose_file), "--no-runtime", "--format", "json"]
    with_ufw = json.loads(runner.invoke(app, [*base, "--firewall", "ufw"]).stdout)
    without = json.loads(runner.invoke(app, [*base, "--firewall", "none"]).stdout)
    assert any(f["rule"] == "firewall-bypass" for f in with_ufw["findings"])
    assert not any(f["rule"] == "firewall-bypass" for f in without["findings"])


def test_help_has_examples(runner: CliRunner):
    result = runner.invoke(app, ["ports", "audit", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout
    for option in ("--file", "--project-dir", "--env-file", "--runtime", "--format", "--fail-on"):
        assert option in result.stdout
