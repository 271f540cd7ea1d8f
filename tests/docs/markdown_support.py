"""Reading a markdown doc the way the doc tests need: fenced blocks, tables, code spans.

Kept deliberately small and strict: a malformed table row or cell is an
error (AssertionError), never silently skipped, so a doc edit cannot make a
documented example or message escape its check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*doc-check:\s*(\S+)(.*?)-->\s*$")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    """A fenced code block, with the `<!-- doc-check: kind k=v -->` line just before it."""

    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str = ""
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    line: int  # 1-based line of the header row
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]  # (line, cells)


def blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"line {start + 1}: code block is never closed"
        marker, args = "", {}
        before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        if found := _MARKER.match(before.strip()):
            marker = found.group(1)
            args = dict(pair.split("=", 1) for pair in found.group(2).split())
        body = "\n".join(lines[start + 1 : end])
        out.append(Block(start + 1, opening.group(1), body, marker, args))
        i = end + 1
    return out


def outside_blocks(text: str) -> str:
    """The doc with fenced blocks blanked out (line numbers kept)."""
    lines = text.splitlines()
    for block in blocks(text):
        count = block.text.count("\n") + 1 if block.text else 0
        for n in range(block.line - 1, block.line + count + 1):
            lines[n] = ""
    return "\n".join(lines)


def _cells(row: str) -> tuple[str, ...]:
    inner = row.strip()
    assert inner.startswith("|") and inner.endswith("|"), f"not a table row: {row!r}"
    return tuple(cell.strip() for cell in inner[1:-1].split("|"))


def tables(text: str) -> list[Table]:
    lines = outside_blocks(text).splitlines()
    out: list[Table] = []
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            i += 1
        header = _cells(lines[start])
        assert start + 1 < i and set(lines[start + 1].replace("|", "").strip()) <= set("-: "), (
            f"line {start + 1}: table without a separator row"
        )
        rows = []
        for n in range(start + 2, i):
            cells = _cells(lines[n])
            assert len(cells) == len(header), (
                f"line {n + 1}: {len(cells)} cells, header has {len(header)} "
                "(a '|' inside a cell breaks the table)"
            )
            rows.append((n + 1, cells))
        out.append(Table(start + 1, header, tuple(rows)))
    return out


def code(cell: str, where: str) -> str:
    """The content of a cell that must be exactly one inline code span."""
    found = re.fullmatch(r"`([^`]+)`", cell)
    assert found, f"{where}: expected one `code` span, got {cell!r}"
    return found.group(1)


def code_spans(text: str) -> list[str]:
    """Every inline code span outside fenced blocks."""
    return _CODE_SPAN.findall(outside_blocks(text))
