"""The ``bertnas`` command.

Each sub-command lives in its own module and registers itself on :data:`app`. User
errors (:class:`~bertnas.errors.BertnasError`) become a one-line message on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from bertnas.errors import BertnasError

app = typer.Typer(
    name="bertnas",
    help="Hardware-aware neural architecture search for compressed BERT models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> None:
    """Print a one-line user error and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to ``app``.
    from bertnas.cli import cost_command, extract_command, space_commands  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    _register_commands()
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="bertnas", standalone_mode=False)
    except BertnasError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        # Usage errors (unknown option, missing argument): click's own message, exit 2.
        error.show()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
