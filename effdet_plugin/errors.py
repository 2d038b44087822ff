"""How errors reach the user: the one line of a host's or library's exception that a message quotes, and the one line
a host's command line prints when it stops on one of the plugin's own errors.

A command such as ``yolo train model=bad.yaml`` that stops on a plugin error (a bad YAML row, weight file or key) would
print the host's thirty-line traceback through its engine above the one line that says what is wrong. The plugin's
errors are messages for the user, not bugs to trace, so a host command that ends on one prints that line alone;
``EFFDET_PLUGIN_TRACEBACK=1`` brings the traceback back. Everything else keeps Python's traceback: any other
exception, and the plugin's own errors in a user's script, where the traceback shows the user's line.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

TRACEBACK_VARIABLE = "EFFDET_PLUGIN_TRACEBACK"
_COMMANDS: set[tuple[str, str]] = set()  # (file path ending, function name) of each host's command-line entry


def first_line(e: BaseException, limit: int | None = 300) -> str:
    """The first non-blank line of ``e``'s text (its class name when it has none), at most ``limit`` characters (None:
    whole, for a message that is the plugin's own)."""
    line = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)
    return line[:limit]


def is_plugin_error(e: BaseException) -> bool:
    """An exception of a class the plugin defines (its messages name the file, row or key and what is wrong)."""
    module = type(e).__module__
    return module == "effdet_plugin" or module.startswith("effdet_plugin.")


def one_line_in_command(file_ending: str, function: str) -> None:
    """Print the plugin's own errors as one line when they end a run of the command line whose entry is ``function``
    in a file whose path ends with ``file_ending`` (``/`` separated); installs the hook once, over the previous one."""
    _COMMANDS.add((file_ending, function))
    if not getattr(sys.excepthook, "effdet_plugin", False):
        sys.excepthook = _hook(sys.excepthook)


def _through_command(tb: TracebackType | None) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        path = code.co_filename.replace(os.sep, "/")
        if any(code.co_name == name and path.endswith(ending) for ending, name in _COMMANDS):
            return True
        tb = tb.tb_next
    return False


def _hook(previous):
    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if is_plugin_error(value) and not os.environ.get(TRACEBACK_VARIABLE) and _through_command(tb):
            print(f"{kind.__name__}: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    excepthook.effdet_plugin = True
    return excepthook
