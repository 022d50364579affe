"""`opskit ports audit`: parse, call the action, render (table, JSON or SARIF)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import ConfigOption, ContextOption, DockerHostOption, engine_reference

# The audit (compose parsing, rules, the engine) is imported by `audit` when it runs.
if TYPE_CHECKING:
    from opskit.actions.audit_ports import AuditResult
    from opskit.ports.model import Finding

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich's costs 0.27 s of start-up (issue 13)
    help="""Audit published and exposed ports: risky bindings, conflicts, and drift between
    the compose files and the running engine.

    Examples:

    \b
      opskit ports audit -f compose.yaml
      opskit ports audit --fail-on high --format sarif > ports.sarif
    """,
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"


class SeverityChoice(StrEnum):
    """opskit.ports.model.Severity's values, in its order, for --fail-on: help imports no port
    audit code (tests/unit/cli/test_startup.py keeps the two equal)."""

    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class FirewallChoice(StrEnum):
    auto = "auto"
    none = "none"
    ufw = "ufw"
    firewalld = "firewalld"


# By severity name.
_SEVERITY_STYLES = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


@app.command("audit")
def audit(
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            "-f",
            help="Compose file; repeat to merge files in order, like `docker compose -f a -f b`.",
            show_default=False,
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project-dir",
            help="Project directory (default: the first file's directory); holds `.env`.",
            show_default=False,
        ),
    ] = None,
    env_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--env-file",
            help="Env file for interpolation; repeatable (default: .env in the project dir). "
            "Process environment variables override it.",
            show_default=False,
        ),
    ] = None,
    project_name: Annotated[
        str | None,
        typer.Option(
            "--project-name",
            "-p",
            help="Compose project name (default: COMPOSE_PROJECT_NAME, `name:`, the dir name).",
            show_default=False,
        ),
    ] = None,
    runtime: Annotated[
        bool | None,
        typer.Option(
            "--runtime/--no-runtime",
            help="Audit the engine's running containers too, and their drift from compose "
            "files (default: when an engine answers).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output: table, json or sarif.")
    ] = OutputFormat.table,
    fail_on: Annotated[
        SeverityChoice | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding at or above this severity remains.",
            show_default=False,
        ),
    ] = None,
    firewall: Annotated[
        FirewallChoice,
        typer.Option(
            "--firewall",
            help="Host firewall for firewall-bypass: auto detects ufw/firewalld here; name "
            "one when auditing for another host.",
        ),
    ] = FirewallChoice.auto,
    docker_host: DockerHostOption = None,
    docker_context: ContextOption = None,
    config: ConfigOption = None,
) -> None:
    """Find risky, colliding and drifting port mappings in compose files and on the engine.

    Exit codes: 0 no finding at or above --fail-on; 1 there is one; 2 bad usage or input.

    Examples:

    \b
      opskit ports audit -f compose.yaml
      opskit ports audit -f compose.yaml -f compose.prod.yaml --env-file prod.env --no-runtime
      opskit ports audit --runtime --format json
      opskit ports audit -f compose.yaml --no-runtime --format sarif > ports.sarif
      opskit ports audit -f compose.yaml --fail-on high --firewall ufw
    """
    with starting_up():
        from opskit.actions.audit_ports import AuditRequest, run_audit_ports
        from opskit.config.load import load_config
        from opskit.ports import report, sarif
        from opskit.ports.model import Severity
    policy = load_config(config).ports
    firewalls = None
    if firewall is not FirewallChoice.auto:
        firewalls = [] if firewall is FirewallChoice.none else [str(firewall)]
    request = AuditRequest(
        files=list(files or []),
        project_dir=project_dir,
        env_files=list(env_files or []),
        project_name=project_name,
        runtime=runtime,
        docker_host=engine_reference(docker_host, docker_context),
        firewalls=firewalls,
    )
    result = run_audit_ports(request, policy)
    if output_format is OutputFormat.json:
        render.print_json(report.json_document(result.mappings, result.findings))
    elif output_format is OutputFormat.sarif:
        render.print_json(sarif.sarif_document(result.findings))
    else:
        _print_table(result)
    if fail_on is not None and result.fails(Severity(fail_on.value)):
        raise typer.Exit(1)


def _where(finding: Finding) -> str:
    if finding.location is not None:
        return f"{finding.location.file}:{finding.location.line}"
    return finding.container or finding.file or "-"


def _print_table(result: AuditResult) -> None:
    from rich.table import Table

    from opskit.ports.model import Severity

    if result.findings:
        table = Table(show_lines=False, pad_edge=False)
        for column in ("severity", "rule", "where", "message"):
            table.add_column(column, overflow="fold")
        for finding in result.findings:
            table.add_row(
                f"[{_SEVERITY_STYLES[finding.severity.value]}]{finding.severity}[/]",
                finding.rule,
                _where(finding),
                finding.message,
            )
        render.stdout.print(table)
    sources = "compose files and the engine" if result.runtime_checked else "compose files"
    if result.project is None:
        sources = "the engine"
    counts = ", ".join(
        f"{sum(1 for finding in result.findings if finding.severity is severity)} {severity}"
        for severity in reversed(Severity)
    )
    summary = f"{len(result.mappings)} mappings from {sources}; {len(result.findings)} findings"
    if result.findings:
        summary += f" ({counts})"
    if result.silenced:
        summary += f"; {len(result.silenced)} allowed by the config"
    render.stdout.print(summary, markup=False)
