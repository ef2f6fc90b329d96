"""The ``bertnas`` command.

Each sub-command lives in its own module and registers itself on :data:`app`. User
errors (:class:`~bertnas.errors.BertnasError`) become a one-line message on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

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
    from bertnas.cli import (  # noqa: F401
        cost_command,
        export_command,
        extract_command,
        finetune_commands,
        hardware_commands,
        predict_command,
        search_commands,
        space_commands,
        train_commands,
    )


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click and from typer's vendored click copy (newer typers ship one)."""
    classes: list[type[BaseException]] = [getattr(click.exceptions, name)]
    try:
        from typer._click import exceptions as vendored  # type: ignore[import-not-found]

        if hasattr(vendored, name):
            classes.append(getattr(vendored, name))
    except ImportError:
        pass
    return tuple(classes)


class _PipeClosed(BaseException):
    """stdout's reader went away (``bertnas space sample ... | head``): not an error of ours.
    A BaseException, so that click's own handling of EPIPE (exit 1) never sees it."""


class _PipeGuard:
    """Wraps stdout: a write or flush into a closed pipe raises :class:`_PipeClosed`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise _PipeClosed from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise _PipeClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


#: Exit status of a command whose output pipe closed: what a shell reports for SIGPIPE (128 + 13).
PIPE_CLOSED_EXIT = 141


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 user error, 130 interrupted, 141 output pipe closed)."""
    _register_commands()
    command = typer.main.get_command(app)
    stdout = sys.stdout
    sys.stdout = _PipeGuard(stdout)  # type: ignore[assignment]
    try:
        return _run(command, argv)
    except _PipeClosed:
        _silence_stdout()
        return PIPE_CLOSED_EXIT
    finally:
        sys.stdout = stdout


def _silence_stdout() -> None:
    """Point the closed stdout at /dev/null, so the interpreter's last flush is quiet too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _run(command: Any, argv: list[str] | None) -> int:
    usage_errors = _exception_classes("ClickException")
    aborts = _exception_classes("Abort")
    try:
        result = command.main(args=argv, prog_name="bertnas", standalone_mode=False)
    except BertnasError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except (typer.Exit, click.exceptions.Exit) as exit_:
        return int(exit_.exit_code)
    except aborts:
        typer.echo("aborted", err=True)
        return 130
    except usage_errors as error:
        # Usage errors (unknown option, missing argument): click's own short message, exit 2.
        error.show()  # type: ignore[attr-defined]
        return int(getattr(error, "exit_code", 2))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    # Run as a script (python -m bertnas.cli.main), this file is ``__main__``, not the
    # ``bertnas.cli.main`` the command modules register on: call that one's main.
    from bertnas.cli.main import main as _registered_main

    sys.exit(_registered_main())
