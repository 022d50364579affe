"""`opskit volume verify`: parse, call the restore drill, render."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from opskit import errors
from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import (
    ConfigOption,
    ContextOption,
    DockerHostOption,
    FromOption,
    HostOption,
    IdentityOption,
    JsonOption,
    engine_reference,
)
from opskit.cli.volume import (
    HelperImageOption,
    TransferMode,
    TransferOption,
    app,
    resolve_location,
)

if TYPE_CHECKING:
    from opskit.actions.verify import BackupVerification, VerifyResult

SHOWN_DIFFERENCES = 10


@app.command("verify")
def verify(
    from_: FromOption = None,
    host: HostOption = None,
    volume: Annotated[
        str | None,
        typer.Option(
            "--volume", help="Only backups of this volume or path (default: every source)."
        ),
    ] = None,
    backup_id: Annotated[
        str,
        typer.Option(
            "--backup", help="Backup id, latest (of each source, pre-restore copies aside), or all."
        ),
    ] = "latest",
    check_image: Annotated[
        str | None,
        typer.Option(
            "--check-image",
            help="Image for the application check, run with the restored copy at /data "
            "(never pulled: it must be on the engine).",
            show_default=False,
        ),
    ] = None,
    check_cmd: Annotated[
        str | None,
        typer.Option(
            "--check-cmd",
            help="The check's command, split like a shell does (no shell: use sh -c '...' for "
            "one); a non-zero exit fails the drill.",
            show_default=False,
        ),
    ] = None,
    check_user: Annotated[
        str | None,
        typer.Option(
            "--check-user", help="User (uid[:gid]) the check runs as.", show_default=False
        ),
    ] = None,
    check_timeout: Annotated[
        float, typer.Option("--check-timeout", min=1, help="Seconds before the check is killed.")
    ] = 600,
    allow_devices: Annotated[
        bool,
        typer.Option("--allow-devices", help="Restore device nodes the archive holds."),
    ] = False,
    json_output: JsonOption = False,
    transfer: TransferOption = TransferMode.auto,
    helper_image: HelperImageOption = None,
    docker_host: DockerHostOption = None,
    docker_context: ContextOption = None,
    identity: IdentityOption = None,
    config_path: ConfigOption = None,
) -> None:
    """Restore drill: check the archive, restore it into a scratch volume, compare every entry
    with the archive's listing, optionally run an application check. The outcome is recorded
    in the backup's metadata; the exit code is 1 if any backup fails.

    Examples:

    \b
      opskit volume verify --from /var/backups/opskit
      opskit volume verify --from /var/backups/opskit --volume pgdata --backup all
      opskit volume verify --from s3://ops-backups/docker --volume pgdata --check-image
      postgres:16 --check-user postgres --check-cmd "pg_checksums --check -D /data"
    """
    with starting_up():
        from opskit.actions.verify import VerifyRequest, run_verify
        from opskit.config.load import load_config
    config = load_config(config_path)
    try:
        command = shlex.split(check_cmd) if check_cmd else []
    except ValueError as exc:
        raise errors.UsageError(f"--check-cmd cannot be split: {exc}") from exc
    request = VerifyRequest(
        from_=resolve_location(from_, config),
        volume=volume,
        backup=backup_id,
        check_image=check_image,
        check_command=command,
        check_user=check_user,
        check_timeout=check_timeout,
        transfer=transfer.value,
        helper_image=helper_image,
        docker_host=engine_reference(docker_host, docker_context),
        host=host,
        allow_devices=allow_devices,
    )
    with render.run_context(config, identity) as context:
        result = run_verify(request, context)
    if json_output:
        render.print_json(result.to_dict())
    else:
        render.stdout.print(_report(result), markup=False)
    if not result.ok:
        failed = result.failed
        first = failed[0]
        others = f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else ""
        raise errors.OpskitError(
            f"verification of {first.backup_id} failed: {first.reason}{others}"
        )


def _report(result: VerifyResult) -> str:
    return "\n".join(_one(verification) for verification in result.verifications)


def _one(verification: BackupVerification) -> str:
    outcome = "ok" if verification.ok else "FAILED"
    lines = [
        f"{outcome}  {render.printable(verification.backup_id)} "
        f"({render.printable(verification.source)}, {verification.seconds:.1f} s)",
        "  " + "  ".join(f"{step} {state}" for step, state in verification.steps.items()),
        f"  {render.printable(verification.reason)}",
    ]
    for difference in verification.differences[:SHOWN_DIFFERENCES]:
        lines.append(f"    {render.printable(difference)}")
    more = verification.difference_count - min(len(verification.differences), SHOWN_DIFFERENCES)
    if more > 0:
        lines.append(f"    ... and {more} more differences (--json lists the first 20)")
    for line in verification.check_output:
        lines.append(f"    | {render.printable(line)}")
    if not verification.recorded:
        lines.append("  (not recorded: the backup was removed meanwhile)")
    return "\n".join(lines)
