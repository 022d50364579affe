"""What a backup reads: a volume or a host directory. Plain data, no engine: listing a store
by source name needs it, and must not load docker (start-up, issue 13)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from opskit import errors


@dataclass(frozen=True)
class DataSource:
    """A volume name or an absolute host path (the source of a bind mount)."""

    kind: str  # "volume" or "path"
    name: str

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """Text with a `/` (or a leading `.`/`~`) is a host path, made absolute; else a volume."""
        if "/" in text or text.startswith((".", "~")):
            path = os.path.abspath(os.path.expanduser(text))
            if path == "/":
                raise errors.UsageError("refusing / as a data path", "name a directory below it")
            return cls("path", path)
        if not text:
            raise errors.UsageError("empty volume name")
        return cls("volume", text)

    def describe(self) -> str:
        return f"volume {self.name}" if self.kind == "volume" else f"path {self.name}"
