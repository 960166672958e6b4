"""Tables of named entries (model families, detectors, public models, registry archives).

Why one helper: each table is written as a list of entries and read by name. A dict
comprehension over the list would keep the last of two entries that share a name and drop
the other without a word; :func:`by_name` refuses that when the module is imported.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


def by_name(*entries: T) -> dict[str, T]:
    """``{entry.name: entry}`` in the given order; a repeated name is a ValueError (a bug in
    the table, caught at import, not a user error)."""
    table: dict[str, T] = {}
    for entry in entries:
        if entry.name in table:
            raise ValueError(f"two table entries are named {entry.name!r}")
        table[entry.name] = entry
    return table
