"""The SARIF 2.1.0 document: its shape, rule metadata, file/line locations and fingerprints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opskit.ports import sarif
from opskit.ports.model import RULE_IDS, Finding, Location, Severity
from opskit.ports.report import json_document
from opskit.ports.rules import RULES


def compose_finding(tmp_path: Path, severity: Severity = Severity.high) -> Finding:
    file = str(tmp_path / "deploy" / "compose.yaml")
    return Finding(
        rule="sensitive-port-public",
        severity=severity,
        message="service db publishes *:5432->5432/tcp (PostgreSQL) on all interfaces",
        source="compose",
        file=file,
        service="db",
        host_port=5432,
        container_port=5432,
        protocol="tcp",
        location=Location(file, 12, 7),
        related=(Location(file, 4, 7),),
    )


def runtime_finding() -> Finding:
    return Finding(
        rule="all-interfaces",
        severity=Severity.low,
        message="container legacy publishes *:8080->80/tcp on all interfaces",
        source="runtime",
        container="legacy",
        host_port=8080,
        container_port=80,
        protocol="tcp",
    )


def test_sarif_document_shape(tmp_path: Path):
    document = sarif.sarif_document([compose_finding(tmp_path), runtime_finding()], tmp_path)
    json.dumps(document)  # serializable as is
    assert document["version"] == "2.1.0"
    assert document["$schema"].endswith("sarif-2.1.0.json")
    [run] = document["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "opskit"
    assert [rule["id"] for rule in driver["rules"]] == list(RULE_IDS)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert 0 <= float(rule["properties"]["security-severity"]) <= 10
    assert len(run["results"]) == 2


def test_compose_result_has_file_and_line(tmp_path: Path):
    document = sarif.sarif_document([compose_finding(tmp_path)], tmp_path)
    [result] = document["runs"][0]["results"]
    assert result["ruleId"] == "sensitive-port-public"
    assert document["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == (
        "sensitive-port-public"
    )
    assert result["level"] == "error"
    assert "PostgreSQL" in result["message"]["text"]
    [location] = result["locations"]
    physical = location["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "deploy/compose.yaml"
    assert physical["region"] == {"startLine": 12, "startColumn": 7}
    assert result["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 4
    assert result["properties"]["service"] == "db"
    assert len(result["partialFingerprints"]["opskitFinding/v1"]) == 32


def test_runtime_result_has_a_logical_location(tmp_path: Path):
    [result] = sarif.sarif_document([runtime_finding()], tmp_path)["runs"][0]["results"]
    [location] = result["locations"]
    assert location["logicalLocations"][0]["name"] == "legacy"
    assert result["level"] == "note"


def test_files_outside_the_base_get_absolute_uris(tmp_path: Path):
    base = tmp_path / "repo"
    base.mkdir()
    assert sarif.artifact_uri(str(tmp_path / "other.yaml"), base).startswith("file:///")


def test_fingerprint_survives_line_moves(tmp_path: Path):
    first = compose_finding(tmp_path)
    moved = Finding(**{**first.__dict__, "location": Location(first.file, 40, 7)})
    results = sarif.sarif_document([first, moved], tmp_path)["runs"][0]["results"]
    fingerprints = {result["partialFingerprints"]["opskitFinding/v1"] for result in results}
    assert len(fingerprints) == 1


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (Severity.critical, "error"),
        (Severity.high, "error"),
        (Severity.medium, "warning"),
        (Severity.low, "note"),
        (Severity.info, "note"),
    ],
)
def test_levels(tmp_path: Path, severity: Severity, level: str):
    [result] = sarif.sarif_document([compose_finding(tmp_path, severity)], tmp_path)["runs"][0][
        "results"
    ]
    assert result["level"] == level


def test_every_rule_is_documented():
    assert all(rule_id in RULES for rule_id in RULE_IDS)
    repository = Path(__file__).parents[3]
    manuals = [repository / "README.md"]
    text = "".join(path.read_text() for path in manuals if path.is_file())
    for rule_id in RULE_IDS:
        heading = re.compile(rf"^#{{2,5}} `{re.escape(rule_id)}`$", re.MULTILINE)
        assert heading.search(text), f"the manual lacks a section for rule {rule_id}"


def test_json_document_has_exactly_the_documented_fields(tmp_path: Path):
    document = json_document([], [compose_finding(tmp_path)])
    assert list(document) == ["mappings", "findings"]
    assert list(document["findings"][0]) == [
        "rule",
        "severity",
        "message",
        "source",
        "file",
        "service",
        "container",
        "host_ip",
        "host_port",
        "container_port",
        "protocol",
    ]
