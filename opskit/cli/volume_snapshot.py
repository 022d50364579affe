"""`opskit volume snapshot`: parse, call the action, render (a command of `volume.app`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import (
    ConfigOption,
    ContextOption,
    DockerHostOption,
    EncryptToFileOption,
    EncryptToOption,
    JsonOption,
    WaitOption,
    engine_reference,
)
from opskit.cli.volume import (
    Compression,
    HelperImageOption,
    TransferMode,
    TransferOption,
    app,
    resolve_location,
)

if TYPE_CHECKING:
    from opskit.actions.snapshot import SnapshotResult

# opskit.repository.snapshots.DEFAULT_TAG, written out so that help imports no repository code
# (tests/unit/cli/test_startup.py keeps the two equal).
DEFAULT_TAG = "pre-upgrade"


@app.command("snapshot")
def snapshot(
    project: Annotated[
        str,
        typer.Option(
            "--project",
            help="The compose project's name (its com.docker.compose.project label).",
            show_default=False,
        ),  # fmt: skip
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Directory or s3://bucket/prefix.", show_default=False),
    ] = None,
    tag: Annotated[str, typer.Option("--tag", help="Tag of every member backup.")] = DEFAULT_TAG,
    stop_containers: Annotated[
        bool,
        typer.Option(
            "--stop-containers",
            help="Stop the project's running containers once for the whole set; start them "
            "again afterwards (in reverse order), even on failure.",
        ),
    ] = False,
    include_binds: Annotated[
        bool, typer.Option("--include-binds", help="Back up the project's bind mounts too.")
    ] = False,
    compress: Annotated[Compression, typer.Option("--compress", help="Archive compression.")] = (
        Compression.zstd
    ),
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
    """Back up every volume of a compose project as one snapshot (the pre-upgrade path).

    The snapshot is stored only if every member is; restore it as a set with
    `opskit volume restore --snapshot ID`.

    Examples:

    \b
      opskit volume snapshot --project shop --to /var/backups/opskit --stop-containers
      opskit volume snapshot --project shop --tag before-v2 --include-binds --json
    """
    with starting_up():
        from opskit.actions.snapshot import SnapshotRequest, run_snapshot
        from opskit.config.load import load_config
    config = load_config(config_path)
    request = SnapshotRequest(
        project=project,
        to=resolve_location(to, config),
        tag=tag,
        stop_containers=stop_containers,
        include_binds=include_binds,
        compression=compress.value,
        transfer=transfer.value,
        helper_image=helper_image,
        docker_host=engine_reference(docker_host, docker_context),
        wait_seconds=wait,
        encryption=render.encryption(encrypt_to, encrypt_to_file),
    )
    with (
        render.progress_bar(f"snapshot {project}", enabled=not json_output) as bar,
        render.run_context(config) as context,
    ):
        result = run_snapshot(request, context, on_progress=render.progress_callback(bar, context))
    if json_output:
        render.print_json(result.to_dict())
    else:
        _print_snapshot(result)
    for line in result.errors:
        render.notice(f"error: {render.printable(line)}")
    if result.errors:
        raise typer.Exit(1)


def _print_snapshot(result: SnapshotResult) -> None:
    record = result.snapshot
    lines = [
        f"snapshot {record.id} of project {render.printable(record.project)}: "
        f"{len(record.members)} backups, tag {render.printable(', '.join(record.tags))}"
    ]
    for backup in result.backups:
        lines.append(
            f"  {backup.kind} {render.printable(backup.source)}  {backup.id}  "
            f"{render.human_size(backup.size)}"
        )
    for skipped in record.skipped:
        lines.append(f"  skipped {render.printable(skipped.get('source', '?'))}: "
                     f"{render.printable(skipped.get('reason', ''))}")  # fmt: skip
    if record.compose_files:
        lines.append(f"  compose files {render.printable(', '.join(record.compose_files))}")
    render.stdout.print("\n".join(lines), markup=False)
