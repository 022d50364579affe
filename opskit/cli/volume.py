"""`opskit volume ...`: placeholder, being written."""

import typer

app = typer.Typer(help="Back up, list and restore Docker volumes.", no_args_is_help=True)
