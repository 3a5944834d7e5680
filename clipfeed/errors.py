"""Errors that carry where bad input came from, so the CLI can print one clear line.

>>> str(InputError("catalog.jsonl", 3, "duration_s", "must be > 0"))
'catalog.jsonl:3: field duration_s: must be > 0'
"""

from __future__ import annotations

from pathlib import Path


class ClipfeedError(Exception):
    """Base class for expected, user-facing failures (bad input, missing files, bad config)."""


class InputError(ClipfeedError):
    """A bad record: names the file, the 1-based line, and the field."""

    def __init__(self, file: str | Path, line: int | None, field: str | None, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f" field {self.field}:" if self.field else ""
        return f"{where}:{what} {self.message}"


class ConfigError(ClipfeedError):
    """Bad settings: unknown keys, wrong types, unreadable config files."""


class NotBuiltError(ClipfeedError):
    """A command whose stage has not been built yet (says which issue will build it)."""
