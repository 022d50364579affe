"""The audit as SARIF 2.1.0, for code-scanning UIs (GitHub, GitLab) to show findings in place."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opskit import __version__
from opskit.ports.model import Finding, Location, Severity
from opskit.ports.rules import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/opskit/opskit/blob/main/README.md"

_LEVELS = {
    Severity.critical: "error",
    Severity.high: "error",
    Severity.medium: "warning",
    Severity.low: "note",
    Severity.info: "note",
}
# GitHub reads `security-severity` (0-10) to rank security alerts.
_SECURITY_SEVERITY = {
    Severity.critical: "9.5",
    Severity.high: "8.0",
    Severity.medium: "5.5",
    Severity.low: "3.0",
    Severity.info: "1.0",
}


def artifact_uri(file: str, base: Path | None = None) -> str:
    """Return a file's URI: relative to `base` (default: the working dir) when inside it,
    so code-scanning tools resolve it against the checkout; otherwise an absolute file URI."""
    base = (base or Path.cwd()).resolve()
    path = Path(file)
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return absolute.as_uri()


def _physical(location: Location, base: Path | None) -> dict[str, Any]:
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": artifact_uri(location.file, base)},
            "region": {"startLine": location.line, "startColumn": location.column},
        }
    }


def _fingerprint(finding: Finding) -> str:
    """A hash that survives line moves, so code scanning tracks one alert across commits."""
    parts = [
        finding.rule,
        finding.source,
        finding.service or "",
        finding.container or "",
        finding.host_ip or "",
        str(finding.host_port or ""),
        str(finding.container_port or ""),
        finding.protocol or "",
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _rule_descriptor(rule_id: str) -> dict[str, Any]:
    rule = RULES[rule_id]
    return {
        "id": rule.id,
        "name": "".join(word.capitalize() for word in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.why},
        "help": {
            "text": f"{rule.why}\n\nFix: {rule.fix}",
            "markdown": f"{rule.why}\n\n**Fix:** {rule.fix}",
        },
        "helpUri": f"{INFORMATION_URI}#{rule.id}",
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {
            "security-severity": _SECURITY_SEVERITY[rule.severity],
            "tags": ["security", "network", "docker"],
        },
    }


def _result(finding: Finding, rule_index: int, base: Path | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": _LEVELS[finding.severity],
        "message": {"text": finding.message},
        "partialFingerprints": {"opskitFinding/v1": _fingerprint(finding)},
        "properties": {
            key: value
            for key, value in finding.to_dict().items()
            if key not in ("rule", "message") and value is not None
        },
    }
    if finding.location is not None:
        result["locations"] = [_physical(finding.location, base)]
    else:
        name = finding.container or finding.service or "engine"
        result["locations"] = [
            {
                "logicalLocations": [
                    {"name": name, "fullyQualifiedName": f"docker/{name}", "kind": "resource"}
                ]
            }
        ]
    if finding.related:
        result["relatedLocations"] = [
            {"id": index, **_physical(location, base), "message": {"text": "also claimed here"}}
            for index, location in enumerate(finding.related, start=1)
        ]
    return result


def sarif_document(findings: Sequence[Finding], base: Path | None = None) -> dict[str, Any]:
    """Return the findings as one SARIF 2.1.0 log with a single run of the opskit tool."""
    rule_ids = list(RULES)
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "opskit",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule_descriptor(rule_id) for rule_id in rule_ids],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": [
                    _result(finding, rule_ids.index(finding.rule), base) for finding in findings
                ],
            }
        ],
    }
