"""The one line of an exception a message quotes: hosts and libraries raise multi-line texts with help links."""

from __future__ import annotations


def first_line(e: BaseException, limit: int | None = 300) -> str:
    """The first non-blank line of ``e``'s text (its class name when it has none), at most ``limit`` characters (None:
    whole, for a message that is the plugin's own)."""
    line = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)
    return line[:limit]
