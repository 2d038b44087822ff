"""Rendered blocks in Markdown pages: the text between ``<!-- render:NAME -->`` and ``<!-- /render:NAME -->``.

``render`` rewrites what stands between a pair of markers and nothing else; markers shown inside code fences (a page
explaining the syntax) are text, not blocks. ``prose`` gives back a page without its rendered blocks, code fences and
inline code, the part a person typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

OPEN = re.compile(r"<!--\s*render:([\w.-]+)\s*-->")
CLOSE = "<!-- /render:{name} -->"
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


class MarkerError(ValueError):
    """A marker without its closing partner, or a name used twice in one page: one line naming page and line."""


@dataclass(frozen=True)
class Block:
    """One rendered block: its name, and the character span of its content (between the two markers)."""

    name: str
    start: int
    end: int
    line: int  # 1-based line of the opening marker


def _fenced(text: str) -> list[bool]:
    """For each line of ``text``: whether it lies inside (or is) a code fence."""
    inside, fence, out = False, "", []
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if m and (not inside or m.group(1) == fence):
            inside, fence = not inside, m.group(1)
            out.append(True)
        else:
            out.append(inside)
    return out


def blocks(text: str, page: str | Path = "page") -> list[Block]:
    """Return the rendered blocks of ``text`` in order; ``MarkerError`` for an unclosed or repeated one."""
    fenced = _fenced(text)
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    found: list[Block] = []
    for m in OPEN.finditer(text):
        line = text.count("\n", 0, m.start())
        if fenced[line]:
            continue
        name = m.group(1)
        close = text.find(CLOSE.format(name=name), m.end())
        if close < 0:
            raise MarkerError(f"{page}:{line + 1}: <!-- render:{name} --> has no closing {CLOSE.format(name=name)}")
        if any(b.name == name for b in found):
            raise MarkerError(f"{page}:{line + 1}: render:{name} appears twice in the page")
        if found and m.start() < found[-1].end:
            raise MarkerError(f"{page}:{line + 1}: render:{name} opens inside render:{found[-1].name}")
        found.append(Block(name, m.end(), close, line + 1))
    return found


def replace(text: str, contents: dict[str, str], page: str | Path = "page") -> str:
    """Return ``text`` with each block named in ``contents`` holding that content (framed by blank lines)."""
    out, at = [], 0
    for b in blocks(text, page):
        if b.name in contents:
            out += [text[at : b.start], "\n\n", contents[b.name].strip("\n"), "\n\n"]
            at = b.end
    return "".join(out) + text[at:]


def prose(text: str, page: str | Path = "page") -> list[tuple[int, str]]:
    """Return (1-based line number, line) of what a person typed: outside rendered blocks and code fences, with
    inline code spans blanked."""
    spans = [(text.count("\n", 0, b.start), text.count("\n", 0, b.end)) for b in blocks(text, page)]
    fenced = _fenced(text)
    out = []
    for i, line in enumerate(text.split("\n")):
        if fenced[i] or any(a <= i <= b for a, b in spans):
            continue
        out.append((i + 1, _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)))
    return out


def rendered_text(text: str, page: str | Path = "page") -> str:
    """The contents of every rendered block of ``text``, joined."""
    return "\n".join(text[b.start : b.end] for b in blocks(text, page))
