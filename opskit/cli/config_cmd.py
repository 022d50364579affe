"""`opskit config check|example`: parse, call the action, render."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from opskit.__main__ import starting_up
from opskit.cli import render
from opskit.cli.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from opskit.actions.config_check import ConfigCheckResult

app = typer.Typer(
    rich_markup_mode=None,  # click's plain help: rich's costs 0.27 s of start-up (issue 13)
    help="""Check the config file, or print an example of one.

    Examples:

    \b
      opskit config check
      opskit config check --config /etc/opskit/opskit.yaml --json
      opskit config example > /etc/opskit/opskit.yaml
    """,
    no_args_is_help=True,
)


@app.command("check")
def check(config_path: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Validate the config and print it with every default filled in, secrets masked (***).

    The file is found as every command finds it: --config, $OPSKIT_CONFIG,
    /etc/opskit/opskit.yaml, ~/.config/opskit/opskit.yaml. An invalid file fails with every
    problem and its key path (exit code 2).

    Examples:

    \b
      opskit config check
      opskit config check --config configs/opskit.example.yaml
      opskit config check --json | jq '.config.jobs[].name'
    """
    with starting_up():
        from opskit.actions.config_check import run_config_check
    result = run_config_check(config_path)
    if json_output:
        render.print_json(result.to_dict())
        return
    # Plain writes: YAML must reach the pipe exactly as dumped (no markup, no wrapping).
    sys.stdout.write(_effective_yaml(result))


def _effective_yaml(result: ConfigCheckResult) -> str:
    import yaml

    if result.path is None:
        where = "built-in defaults (no file found)"
    else:
        where = render.printable(str(result.path))
    text = yaml.safe_dump(result.settings(), sort_keys=False, allow_unicode=True, width=10_000)
    return f"# config: {where}\n{text}"


@app.command("example")
def example() -> None:
    """Print an example config, with every key explained; it is valid as it is.

    Examples:

    \b
      opskit config example
      opskit config example > /etc/opskit/opskit.yaml
    """
    with starting_up():
        from opskit.config.example import generate_example
    sys.stdout.write(generate_example())
