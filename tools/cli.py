"""What every command of the command line shares: its exit codes, one line for each user error
(never a traceback), and progress for long work (shown on a terminal only).

Exit codes:
- 0   done
- 1   done, but not everything went (a redrive kept items, a load found problems, a post failed)
- 2   a user error: a wrong argument, the local stack not running, a missing setup step
- 3   AWS could not be used: no credentials or region, an endpoint that does not answer, a refusal
- 130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator

DONE, NOT_ALL_DONE, USER_ERROR, AWS_ERROR, INTERRUPTED = 0, 1, 2, 3, 130


class CommandError(Exception):
    """A message for the user, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.code = code


def run(command: Callable[[], int]) -> int:
    """Run a command; a user's or AWS's error becomes one `error: ...` line on stderr and its code."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from motostack.launcher import LocalStackError

    try:
        return command()
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except LocalStackError as exc:
        return _fail(str(exc), USER_ERROR)
    except NoRegionError:
        return _fail("no AWS region: pass --region, or set AWS_REGION (or a profile's region)", AWS_ERROR)
    except (NoCredentialsError, PartialCredentialsError):
        return _fail("no AWS credentials: set AWS_PROFILE, or run `aws configure`", AWS_ERROR)
    except EndpointConnectionError as exc:
        return _fail(f"cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}", AWS_ERROR)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return _fail(
            f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}", AWS_ERROR
        )
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def counter(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while the block runs, when stderr is a terminal (quiet otherwise);
    yields the function that advances it by one (safe from any thread)."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def progress[T](items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """`items`, counted on a progress bar (see counter)."""
    with counter(description, total) as advance:
        for item in items:
            yield item
            advance()


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Rows for a person to read, on stdout: a drawn table on a terminal; into a pipe or a file,
    plain aligned columns that are never cut or wrapped (for grep and cut)."""
    if not sys.stdout.isatty():
        print(f"{title}:")
        if not rows:
            return
        widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*row)
    Console().print(out)
