"""The ``harness`` command: one entry point, one thin module per subcommand.

Each module exposes ``add_parser(subparsers)``, which registers its subcommand with ``func`` set to a
function from parsed arguments to an exit code. Heavy imports happen inside those functions, so
``harness list`` never imports torch or starts a JVM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from harness.errors import HarnessError
from harness.version import __version__

#: subcommand modules, in the order ``--help`` lists them
COMMANDS = ["run", "listing", "fetch", "evaluate", "leaderboard", "compare", "check", "reproduce", "diff", "report",
            "exchange", "config", "train", "encode", "ann"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (the command, what is wrong, where the options are listed)
    instead of the whole usage block; exit status 2 as argparse's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Evaluation-first benchmark harness for dense retrieval.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"harness.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A warning in one line, without the source line that raised it: the harness's own as its notes read, any
    other library's with its category and where it was raised."""
    if f"{os.sep}harness{os.sep}" in filename:
        return f"harness: warning: {message}\n"
    return f"warning: {category.__name__}: {' '.join(str(message).split())} ({filename}:{lineno})\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand whose options they are not
        prog = f"harness {args.command}"
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (`{prog} --help` lists the "
                       "options)\n")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that must know what was given
    interrupts = _Interrupts()
    try:
        code = int(args.func(args) or 0)
        if interrupts.seen:  # a Ctrl-C that some library swallowed (a generator closed during garbage collection)
            raise KeyboardInterrupt
        return code
    except HarnessError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped (`harness evaluate ... | head`): quietly, as `ls | head` does
        _quiet_stdout()
        return 141
    except OSError as e:  # disk full, read-only folder, permissions: one line naming the file
        _close_progress_bars()
        where = f"{e.filename}: " if e.filename else ""
        print(f"harness: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("harness: interrupted; finished results are kept, rerun to continue", file=sys.stderr)
        return 130
    finally:
        interrupts.restore()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not report the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _Interrupts:
    """Counts SIGINTs while a command runs, raising KeyboardInterrupt as Python's own handler does, so that
    an interrupt swallowed on its way up (an exception in a finaliser is only printed) still ends the
    command with status 130, never 0."""

    def __init__(self) -> None:
        import signal

        self.seen = 0
        self.previous = None
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None

    def _handle(self, signum: int, frame: object) -> None:
        self.seen += 1
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
            self.previous = None



def _close_progress_bars() -> None:
    """Clear the progress bars an interrupt left open, so the message starts on a line of its own."""
    module = sys.modules.get("tqdm")  # not imported: no bar was ever drawn
    if module is None:
        return
    for bar in list(getattr(module.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar that cannot redraw must not hide the message
            pass
