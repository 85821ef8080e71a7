"""What every ``edgekd`` command shares: errors as one red line and an exit code, flags shown as flags."""

from __future__ import annotations

import typer


class _FlagHelp:
    """Help that shows a flag (``--json``, ``--force``) as a flag: typer 0.29 prints ``<bool>`` after it, which reads
    as if it took a value (and ``--json true`` is then refused)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class FlagsCommand(_FlagHelp, typer.core.TyperCommand):
    pass


class FlagsGroup(_FlagHelp, typer.core.TyperGroup):
    pass


def fail(exc: BaseException, code: int) -> None:
    from rich.markup import escape

    from edgekd.core.console import console
    from edgekd.core.errors import one_line

    problems = getattr(exc, "problems", None)  # several config errors: a heading, then one indented line each
    text = escape(one_line(exc.heading if problems else str(exc)))
    console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False, soft_wrap=True)
    for p in problems or []:
        console.print(f"  {escape(p)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guard(fn, *args, **kwargs):
    """Run a library call; any error becomes one red line and an exit code (EDGEKD_DEBUG=1: the traceback)."""
    from edgekd.core.errors import EdgekdError, debugging, describe_unexpected

    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except EdgekdError as exc:
        if debugging():
            raise
        fail(exc, exc.exit_code)
    except KeyboardInterrupt:
        fail(RuntimeError("interrupted; finished stages are kept and the same command resumes from them"), 130)
    except Exception as exc:  # OSError, ValueError, MemoryError...: still one line, never a traceback
        if debugging():
            raise
        fail(RuntimeError(describe_unexpected(exc)), 1)
