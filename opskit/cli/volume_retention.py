"""`opskit volume prune|delete`: parse, call the action, render."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from opskit import errors
from opskit.__main__ import starting_up
from opskit.cli import render, volume
from opskit.cli.options import ConfigOption, FromOption, HostOption, JsonOption

if TYPE_CHECKING:
    from rich.table import Table

    from opskit.actions.delete import DeleteResult
    from opskit.actions.prune import PruneResult
    from opskit.config.schema import Config

app = volume.app


def _count_option(name: str, what: str) -> object:
    return typer.Option(name, min=0, help=f"Keep the newest backup of each of the last N {what}.")


@app.command("prune")
def prune(
    from_: FromOption = None,
    host: HostOption = None,
    volume_name: Annotated[
        str | None, typer.Option("--volume", help="Only backups of this volume or path.")
    ] = None,
    keep_last: Annotated[
        int, typer.Option("--keep-last", min=0, help="Keep the N newest backups.")
    ] = 0,
    keep_hourly: Annotated[int, _count_option("--keep-hourly", "hours with backups")] = 0,
    keep_daily: Annotated[int, _count_option("--keep-daily", "days with backups")] = 0,
    keep_weekly: Annotated[int, _count_option("--keep-weekly", "ISO weeks with backups")] = 0,
    keep_monthly: Annotated[int, _count_option("--keep-monthly", "months with backups")] = 0,
    keep_yearly: Annotated[int, _count_option("--keep-yearly", "years with backups")] = 0,
    keep_within: Annotated[
        str | None,
        typer.Option(
            "--keep-within",
            help="Keep every backup made within DURATION of the newest one, e.g. 1y6m, 30d, 2d12h.",
            show_default=False,
        ),
    ] = None,
    keep_tag: Annotated[
        list[str] | None,
        typer.Option("--keep-tag", help="Keep every backup with this tag (repeatable)."),
    ] = None,
    no_protect: Annotated[
        list[str] | None,
        typer.Option(
            "--no-protect",
            help="Let the rules remove backups with this protected tag (repeatable; protected "
            "by default: pre-upgrade, pre-restore).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be kept and removed; change nothing."),
    ] = False,
    json_output: JsonOption = False,
    config_path: ConfigOption = None,
) -> None:
    """Remove the backups no --keep-* rule keeps, per source (restic's forget rules).

    Always kept: each source's newest backup, its newest verified one, protected tags.

    Each backup goes metadata first, then archive; a dry run changes nothing.

    Examples:

    \b
      opskit volume prune --from /var/backups/opskit --keep-daily 7 --keep-weekly 4 --dry-run
      opskit volume prune --from s3://ops-backups/docker --keep-last 3 --keep-monthly 12
      opskit volume prune --volume pgdata --keep-within 30d --keep-tag release --json
    """
    with starting_up():
        from opskit.actions.prune import PruneRequest, run_prune
        from opskit.config.load import load_config
        from opskit.repository import retention
    config = load_config(config_path)
    policy = retention.Policy(
        last=keep_last,
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
        within=retention.Duration.parse(keep_within) if keep_within else None,
        tags=tuple(keep_tag or ()),
        protected_tags=_protected_tags(config, no_protect or []),
    )
    request = PruneRequest(
        location=volume.resolve_location(from_, config),
        policy=policy,
        volume=volume_name,
        dry_run=dry_run,
        host=host,
    )
    with render.run_context(config) as context:
        result = run_prune(request, context)
    if json_output:
        render.print_json(result.to_dict())
    else:
        _print_prune(result)
    if result.held:
        first = result.held[0]
        more = f" (and {len(result.held) - 1} more sources)" if len(result.held) > 1 else ""
        raise errors.MetadataCorrupt(
            f"removed nothing of {first.kind} {first.source}{more}: damaged metadata "
            f"{first.problems[0]}",
            "repair the file, or remove it with opskit volume delete ID",
        )


def _protected_tags(config: Config, unprotected: list[str]) -> tuple[str, ...]:
    """Return the protected tags: the config's (the defaults until the config has them),
    without those named by --no-protect. Raise `UsageError` for a tag that is not protected."""
    configured = tuple(config.protected_tags)
    for tag in unprotected:
        if tag not in configured:
            raise errors.UsageError(
                f"--no-protect {render.printable(tag)}: not a protected tag",
                "protected: " + ", ".join(render.printable(name) for name in configured),
            )
    return tuple(tag for tag in configured if tag not in unprotected)


def _print_prune(result: PruneResult) -> None:
    for problem in result.problems:
        render.notice(f"passed over damaged backup metadata {problem}")
    if result.backups:
        render.stdout.print(_prune_table(result))
    removed = result.removed
    verb = "would remove" if result.dry_run else "removed"
    freed = render.human_size(sum(backup.size for backup in removed))
    summary = (
        f"{verb} {len(removed)} of {len(result.backups)} backups ({freed}), "
        f"kept {len(result.backups) - len(removed)}; {result.policy}"
    )
    for orphan in result.orphans:
        summary += (
            f"\n{verb} orphaned archive {render.printable(orphan.name)} "
            f"({render.human_size(orphan.size)})"
        )
    if result.dry_run:
        summary += "\ndry run: nothing was changed"
    render.stdout.print(summary, markup=False)


def _prune_table(result: PruneResult) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for column in ("ID", "SOURCE", "CREATED", "ACTION", "REASONS"):
        table.add_column(column, no_wrap=column in ("ID", "CREATED", "ACTION"))
    for backup in result.backups:
        action = backup.action
        if action == "remove":
            action = "removed" if backup.removed else "would remove"
        cells = [backup.id, backup.source, backup.created, action, ", ".join(backup.reasons)]
        # Text, not str: rich would read `[...]` in a name as markup.
        table.add_row(*(Text(render.printable(cell)) for cell in cells))
    return table


@app.command("delete")
def delete(
    backup_id: Annotated[str, typer.Argument(help="The backup's id, as volume list shows it.")],
    from_: FromOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete a guarded backup too: the newest or newest verified of its "
            "source, one with a protected tag, or a snapshot member.",
        ),
    ] = False,
    json_output: JsonOption = False,
    config_path: ConfigOption = None,
) -> None:
    """Delete one backup: its metadata first, then its archive. Asks first, unless --yes.

    Examples:

    \b
      opskit volume delete pgdata-20261126T095132Z-1a2b --from /var/backups/opskit
      opskit volume delete pgdata-20261126T095132Z-1a2b --from s3://ops-backups/docker --yes
    """
    with starting_up():
        from opskit.actions.delete import DeleteRequest, run_delete
        from opskit.config.load import load_config
    config = load_config(config_path)
    if not yes and not sys.stdin.isatty():
        raise errors.UsageError(
            "refusing to delete without confirmation: no terminal to ask on", "pass --yes"
        )
    request = DeleteRequest(
        location=volume.resolve_location(from_, config),
        backup_id=backup_id,
        force=force,
        protected_tags=tuple(config.protected_tags),
    )
    with render.run_context(config) as context:
        result = run_delete(request, context, confirm=None if yes else _confirm)
    if not result.deleted:
        render.notice("nothing deleted")
        raise typer.Exit(errors.EXIT_FAILURE)
    if json_output:
        render.print_json(result.to_dict())
        return
    lines = [f"deleted backup {render.printable(result.id)}" + _of(result)]
    lines += [f"  removed  {render.printable(name)}" for name in result.objects]
    render.stdout.print("\n".join(lines), markup=False)


def _of(result: DeleteResult) -> str:
    if result.damaged:
        return f" (damaged metadata: {result.damaged})"
    return f" of {result.kind} {render.printable(result.source)}"


def _confirm(candidate: DeleteResult) -> bool:
    """Ask on the terminal (stderr, so --json output stays one document)."""
    if candidate.damaged:
        what = (
            f"backup {render.printable(candidate.id)} with damaged metadata ({candidate.damaged})"
        )
    else:
        what = (
            f"backup {render.printable(candidate.id)} of {candidate.kind} "
            f"{render.printable(candidate.source)}, made {candidate.created}, "
            f"{render.human_size(candidate.size)}"
        )
        if candidate.tags:
            what += ", tags " + ",".join(render.printable(tag) for tag in candidate.tags)
        if candidate.newest:
            what += ", the NEWEST of its source"
    return typer.confirm(f"Delete {what}?", default=False, err=True)
