"""`opskit volume backup|list|restore`: parse, call the action, render."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opskit import errors
from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import (
    ConfigOption,
    ContextOption,
    DockerHostOption,
    EncryptToFileOption,
    EncryptToOption,
    FromOption,
    HostOption,
    IdentityOption,
    JsonOption,
    WaitOption,
    engine_reference,
)

# Each command imports what it runs when it runs (see opskit/__main__.py): help loads none of it.
if TYPE_CHECKING:
    from rich.table import Table

    from opskit.actions.backup_set import SetOutcome, SourceOutcome
    from opskit.actions.restore import RestoreResult
    from opskit.actions.restore_snapshot import SnapshotRestoreRequest
    from opskit.config.schema import Config
    from opskit.repository.catalog import BackupRecord

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich's costs 0.27 s of start-up (issue 13)
    help="""Back up, list and restore Docker volumes and bind-mounted host directories.

    Examples:

    \b
      opskit volume backup pgdata --to /var/backups/opskit
      opskit volume list --from /var/backups/opskit
      opskit volume restore pgdata --from /var/backups/opskit --into pgdata-check
    """,
    no_args_is_help=True,
)


class Compression(StrEnum):
    zstd = "zstd"
    gzip = "gzip"
    none = "none"


class TransferMode(StrEnum):
    auto = "auto"
    fifo = "fifo"
    remote = "remote"
    archive_api = "archive-api"


TransferOption = Annotated[
    TransferMode,
    typer.Option(
        "--transfer",
        envvar="OPSKIT_TRANSFER",
        help="How bytes move: fifo (an engine on this machine, fastest), remote (any engine, "
        "through the API connection), archive-api (the engine's archive endpoint, slow and "
        "it blocks the helper), auto (fifo when the engine says it is on this machine, else "
        "remote).",
    ),
]
HelperImageOption = Annotated[
    str | None,
    typer.Option(
        "--helper-image",
        envvar="OPSKIT_HELPER_IMAGE",
        help="Helper image with sh and tar (default: config helper_image, opskit-helper:gnu-tar).",
        show_default=False,
    ),
]
StopContainersOption = Annotated[
    bool,
    typer.Option(
        "--stop-containers",
        help="Stop running containers that use the volume, and start them again afterwards.",
    ),
]


def resolve_location(given: str | None, config: Config) -> str:
    return given or os.environ.get("OPSKIT_TARGET") or config.default_target


@app.command("backup")
def backup(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Volume names or absolute host paths (or --all).", show_default=False),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Directory or s3://bucket/prefix (default: $OPSKIT_TARGET, config "
            "default_target, /var/backups/opskit).",
            show_default=False,
        ),
    ] = None,
    all_volumes: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every volume (but those labelled, or mounted by a container labelled, "
            "opskit.backup=false).",
        ),
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            help="With --all: only volumes with this label, KEY=VALUE or KEY (repeatable: all "
            "of them).",
            show_default=False,
        ),
    ] = None,
    compress: Annotated[Compression, typer.Option("--compress", help="Archive compression.")] = (
        Compression.zstd
    ),
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag the backup (repeatable).")
    ] = None,
    stop_containers: StopContainersOption = False,
    json_output: JsonOption = False,
    transfer: TransferOption = TransferMode.auto,
    helper_image: HelperImageOption = None,
    docker_host: DockerHostOption = None,
    docker_context: ContextOption = None,
    wait: WaitOption = 0,
    encrypt_to: EncryptToOption = None,
    encrypt_to_file: EncryptToFileOption = None,
    config_path: ConfigOption = None,
) -> None:
    """Back up volumes (or host directories) into .tar.zst/.tar.gz/.tar archives.

    Containers using them may carry hooks: the labels opskit.backup.pre and opskit.backup.post
    hold commands run in the container (sh -c) before and after its volumes are read,
    opskit.backup.timeout their timeout in seconds (default 300). Several sources: each
    outcome is reported, and the exit code is 1 if any failed (--json: a list).

    Examples:

    \b
      opskit volume backup pgdata --to /var/backups/opskit
      opskit volume backup pgdata --to s3://ops-backups/docker --stop-containers --tag nightly
      opskit volume backup pgdata uploads /srv/app/config --json
      opskit volume backup --all --label com.example.tier=db --stop-containers
      opskit volume backup pgdata --to s3://ops-backups/docker --encrypt-to age1ql3z7h…
    """
    if not sources and not all_volumes:
        raise typer.BadParameter("name a volume or path to back up, or pass --all",
                                 param_hint="SOURCES")  # fmt: skip
    with starting_up():
        from opskit.actions.backup import BackupManyRequest, BackupOptions, run_backups
        from opskit.config.load import load_config
    config = load_config(config_path)
    request = BackupManyRequest(
        sources=sources or [],
        to=resolve_location(to, config),
        all_volumes=all_volumes,
        labels=label or [],
        options=BackupOptions(
            compression=compress.value,
            tags=tag or [],
            stop_containers=stop_containers,
            transfer=transfer.value,
            wait_seconds=wait,
        ),
        helper_image=helper_image,
        docker_host=engine_reference(docker_host, docker_context),
        encryption=render.encryption(encrypt_to, encrypt_to_file),
    )
    shown = sources[0] if sources and len(sources) == 1 else "volumes"
    with render.progress_bar(f"backup {shown}", enabled=not json_output) as bar:
        with render.run_context(config) as context:
            result = run_backups(
                request, context, on_progress=render.progress_callback(bar, context)
            )
    single = len(request.sources) == 1 and not all_volumes
    if single and result.outcomes[0].error is not None:
        for line in result.errors:  # a post hook's failure, said before the main error
            render.notice(f"also: {render.printable(line)}")
        raise result.outcomes[0].error  # one source: its own message and exit code
    if json_output:
        outcomes = result.outcomes
        render.print_json(
            outcomes[0].to_dict()["backup"] if single else [item.to_dict() for item in outcomes]
        )
    elif single:
        _print_record(result.outcomes[0].record)
    else:
        _print_outcomes(result.outcomes)
    _exit_on_failures(result)


def _print_record(record: BackupRecord | None) -> None:
    assert record is not None
    render.stdout.print(
        f"backed up {record.kind} {render.printable(record.source)} as {record.id}\n"
        f"  archive  {render.printable(record.location)}\n"
        f"  size     {render.human_size(record.size)} ({_stages(record)}, "
        f"{render.human_size(record.tar_size)} of tar)\n"
        f"  sha256   {record.sha256}\n"
        f"  tar      {record.tar or 'unknown'}"
        + (f" (keeps {', '.join(record.tar_keeps)})" if record.tar_keeps else ""),
        markup=False,
    )


def _print_outcomes(outcomes: list[SourceOutcome]) -> None:
    """One line per source backed up or skipped (stdout); failures go to stderr."""
    from opskit.actions.backup_set import SKIPPED

    for item in outcomes:
        what = f"{item.source.kind} {render.printable(item.source.name)}"
        if item.record is not None:
            render.stdout.print(
                f"backed up {what} as {item.record.id} ({render.human_size(item.record.size)})",
                markup=False,
            )
        elif item.status == SKIPPED:
            render.stdout.print(f"skipped {what}: {render.printable(item.reason)}", markup=False)


def _exit_on_failures(result: SetOutcome) -> None:
    """Print one `error:` line per failed source and per error of the run; exit 1 if any."""
    from opskit.actions.backup_set import FAILED

    lines = []
    for item in result.outcomes:
        if item.status == FAILED:
            named = item.source.describe() in item.reason
            lines.append(item.reason if named else f"{item.source.describe()}: {item.reason}")
    lines.extend(result.errors)
    for line in lines:
        render.notice(f"error: {render.printable(line)}")
    if lines:
        raise typer.Exit(errors.EXIT_FAILURE)


@app.command("list")
def list_backups(
    from_: FromOption = None,
    volume: Annotated[
        str | None, typer.Option("--volume", help="Only backups of this volume or path.")
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only backups with this tag (repeatable: any of them)."),
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="Only backups of this snapshot.")
    ] = None,
    host: HostOption = None,
    all_hosts: Annotated[
        bool,
        typer.Option("--all-hosts", help="Every machine's backups in a target shared by a fleet."),
    ] = False,
    json_output: JsonOption = False,
    config_path: ConfigOption = None,
) -> None:
    """List backups, oldest first.

    Examples:

    \b
      opskit volume list --from /var/backups/opskit
      opskit volume list --from s3://ops-backups/docker --volume pgdata --json
      opskit volume list --from offsite --all-hosts
      opskit volume list --from offsite --host db1
    """
    with starting_up():
        from opskit.actions.list_backups import run_list_backups
        from opskit.config.load import load_config
        from opskit.repository import filters
    config = load_config(config_path)
    location = resolve_location(from_, config)
    with render.run_context(config) as context:
        listing = run_list_backups(location, context, volume, host=host, all_hosts=all_hosts)
    records = filters.filter_listing(listing, tag or [], snapshot)
    for problem in records.problems:
        render.notice(f"passed over damaged backup metadata {problem}")
    if json_output:
        render.print_json([record.to_dict() for record in records])
        return
    if not records:
        of = f" of {render.printable(volume)}" if volume else ""
        render.notice(f"no backups{of} in {render.printable(location)}")
        return
    render.stdout.print(_records_table(records))


def _stages(record: BackupRecord) -> str:
    """`zstd`, `zstd+age` (encrypted), `none`."""
    return "+".join(record.stage_names()) or "none"


def _records_table(records: list[BackupRecord]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    columns = ("ID", "HOST", "SOURCE", "KIND", "CREATED", "SIZE", "COMPRESSION", "TAR", "TAGS",
               "VERIFIED")  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "CREATED"))
    for record in records:
        cells = [
            record.id,
            record.hostname or "-",
            record.source,
            record.kind,
            record.created,
            render.human_size(record.size),
            _stages(record),
            record.tar or "-",
            ",".join(record.tags),
            _verified(record),
        ]
        # Text, not str: rich would read `[...]` in a name as markup.
        table.add_row(*(Text(render.printable(cell)) for cell in cells))
    return table


def _verified(record: BackupRecord) -> str:
    """`ok <time>`, `FAILED <time>`, or `-` if never verified."""
    if record.verified_ok is None:
        return "-"
    return f"{'ok' if record.verified_ok else 'FAILED'} {record.verified_at or ''}".strip()


@app.command("restore")
def restore(
    source: Annotated[
        str | None,
        typer.Argument(help="Volume name or host path that was backed up.", show_default=False),
    ] = None,
    snapshot: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            help="Restore every member of this snapshot (opskit volume snapshot) into its own "
            "volume or path; all are checked before any is touched.",
            show_default=False,
        ),
    ] = None,
    from_: FromOption = None,
    host: HostOption = None,
    backup_id: Annotated[str, typer.Option("--backup", help="Backup id, or latest.")] = "latest",
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            help="Restore into this volume or path instead (created if missing).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a non-empty target; its contents are first saved "
            "as a pre-restore backup.",
        ),
    ] = False,
    stop_containers: StopContainersOption = False,
    allow_devices: Annotated[
        bool,
        typer.Option(
            "--allow-devices",
            help="Restore device nodes the archive holds (refused by default: a planted "
            "device node gives raw access to a disk).",
        ),
    ] = False,
    json_output: JsonOption = False,
    transfer: TransferOption = TransferMode.auto,
    helper_image: HelperImageOption = None,
    docker_host: DockerHostOption = None,
    docker_context: ContextOption = None,
    wait: WaitOption = 0,
    identity: IdentityOption = None,
    config_path: ConfigOption = None,
) -> None:
    """Restore a backup. Refuses a non-empty target without --force; never leaves it half-written.

    Examples:

    \b
      opskit volume restore pgdata --from /var/backups/opskit
      opskit volume restore pgdata --from /var/backups/opskit --force --stop-containers
      opskit volume restore pgdata --from /var/backups/opskit --backup pgdata-20261126T095132Z-1a2b
      opskit volume restore pgdata --from s3://ops-backups/docker --into pgdata-check
      opskit volume restore pgdata --from offsite --host db1 --into pgdata-from-db1
      opskit volume restore --snapshot shop-20261126T095132Z-1a2b --force --stop-containers
    """
    with starting_up():
        from opskit.actions.restore import RestoreRequest, run_restore
        from opskit.actions.restore_snapshot import SnapshotRestoreRequest
        from opskit.config.load import load_config
    config = load_config(config_path)
    if snapshot is not None:
        if source is not None or into is not None or backup_id != "latest" or host:
            raise errors.UsageError("--snapshot restores a whole set: give no source, --into, "
                                    "--backup or --host with it")  # fmt: skip
        _restore_snapshot(
            SnapshotRestoreRequest(
                snapshot=snapshot,
                from_=resolve_location(from_, config),
                force=force,
                stop_containers=stop_containers,
                transfer=transfer.value,
                helper_image=helper_image,
                docker_host=engine_reference(docker_host, docker_context),
                wait_seconds=wait,
                allow_devices=allow_devices,
            ),
            config,
            json_output,
            identity,
        )
        return
    if source is None:
        raise typer.BadParameter("name the volume or path to restore, or pass --snapshot ID",
                                 param_hint="SOURCE")  # fmt: skip
    request = RestoreRequest(
        source=source,
        from_=resolve_location(from_, config),
        backup=backup_id,
        into=into,
        force=force,
        stop_containers=stop_containers,
        transfer=transfer.value,
        helper_image=helper_image,
        docker_host=engine_reference(docker_host, docker_context),
        wait_seconds=wait,
        allow_devices=allow_devices,
        host=host,
    )
    with render.progress_bar(f"restore {source}", enabled=not json_output) as bar:
        with render.run_context(config, identity) as context:
            result = run_restore(
                request,
                context,
                on_progress=render.progress_callback(bar, context),
                on_total=bar.set_total if bar.shown else None,
            )
    if json_output:
        render.print_json(result.to_dict())
        return
    _print_restore(result)


def _restore_snapshot(
    request: SnapshotRestoreRequest, config: Config, json_output: bool, identity: Path | None
) -> None:
    from opskit.actions.restore_snapshot import run_restore_snapshot

    with render.run_context(config, identity) as context:
        result = run_restore_snapshot(request, context)
    if json_output:
        render.print_json(result.to_dict())
        return
    render.stdout.print(
        f"restored snapshot {render.printable(result.snapshot.id)} of project "
        f"{render.printable(result.snapshot.project)}: {len(result.restored)} members",
        markup=False,
    )
    for member in result.restored:
        _print_restore(member)


def _print_restore(result: RestoreResult) -> None:
    lines = [
        f"restored {render.printable(result.backup.id)} into {result.target_kind} "
        f"{render.printable(result.target)}" + (" (created)" if result.created_target else ""),
        f"  from     {render.printable(result.backup.location)}",
        f"  sha256   {result.backup.sha256} (verified)",
    ]
    if result.safety_backup is not None:
        lines.append(f"  previous contents saved as {result.safety_backup.id} (tag pre-restore)")
    if result.restarted_containers:
        lines.append(f"  restarted {', '.join(result.restarted_containers)}")
    for what, count, names in (
        ("setuid/setgid files", result.setid_count, result.setid_files),
        ("files with capabilities", result.capability_count, result.capability_files),
    ):
        if count:
            shown = ", ".join(render.printable(name) for name in names[:10])
            more = count - min(len(names), 10)
            lines.append(
                f"  {what} restored: {count} ({shown}" + (f", and {more} more)" if more else ")")
            )
    render.stdout.print("\n".join(lines), markup=False)
    if result.signal_after_commit:
        render.notice(
            f"{result.signal_after_commit} arrived after the restore was complete; it is complete"
        )
    if result.old_contents_left:
        render.notice(
            f"the replaced contents still wait, hidden, in {result.target}; the next opskit run "
            f"on it deletes them (or now: opskit volume recover {result.target})"
        )


@app.command("recover")
def recover(
    target: Annotated[str, typer.Argument(help="Volume name or host path.")],
    stop_containers: StopContainersOption = False,
    json_output: JsonOption = False,
    helper_image: HelperImageOption = None,
    docker_host: DockerHostOption = None,
    docker_context: ContextOption = None,
    wait: WaitOption = 0,
    config_path: ConfigOption = None,
) -> None:
    """Finish or roll back a restore that was killed, as the target's journal says.

    Every backup and restore does this first anyway; use it to make the target consistent now.

    Examples:

    \b
      opskit volume recover pgdata
      opskit volume recover /srv/app/uploads --wait 600
      opskit volume recover pgdata --stop-containers
    """
    with starting_up():
        from opskit.actions.recover import RecoverRequest, run_recover
        from opskit.config.load import load_config
    config = load_config(config_path)
    request = RecoverRequest(
        target=target,
        helper_image=helper_image,
        docker_host=engine_reference(docker_host, docker_context),
        wait_seconds=wait,
        stop_containers=stop_containers,
    )
    with render.run_context(config) as context:
        result = run_recover(request, context)
    if json_output:
        render.print_json(result.to_dict())
        return
    render.stdout.print(
        result.done or f"nothing to recover in {result.target_kind} {result.target}", markup=False
    )
