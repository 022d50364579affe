"""`opskit ports ...`: placeholder until the port audit lands."""

import typer

app = typer.Typer(help="Audit published and exposed ports.", no_args_is_help=True)
