"""Choosing what a backup run takes: named sources, `--all` with label filters, and opt-outs.

A volume opts out with the label `opskit.backup=false`, or when a container that mounts it
(running or not) carries that label. Opt-outs apply to what opskit selects (`--all`, a compose
project's snapshot); a source named on the command line is always backed up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opskit import errors
from opskit.engine import volumes

OPT_OUT_LABEL = "opskit.backup"
# Volumes opskit itself makes for a moment (verify's scratch volumes) are never selected.
INTERNAL_VOLUME_LABELS = ("io.opskit.scratch",)


@dataclass(frozen=True)
class LabelFilter:
    """`KEY=VALUE` (the label has that value) or `KEY` (the label is present)."""

    key: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> LabelFilter:
        """Parse `KEY=VALUE` or `KEY`. Raise `UsageError` if the key is empty."""
        key, equals, value = text.partition("=")
        if not key.strip():
            raise errors.UsageError(f"--label {text!r} has no key", "write --label KEY=VALUE")
        return cls(key.strip(), value if equals else None)

    def matches(self, labels: dict[str, str]) -> bool:
        if self.key not in labels:
            return False
        return self.value is None or labels[self.key] == self.value


def labels_match(labels: dict[str, str], filters: Iterable[LabelFilter]) -> bool:
    """Whether `labels` satisfy every filter (no filters: always)."""
    return all(label_filter.matches(labels) for label_filter in filters)


def opts_out(labels: dict[str, str]) -> bool:
    """Whether `labels` say `opskit.backup=false` (any case)."""
    return labels.get(OPT_OUT_LABEL, "").strip().lower() == "false"


def opt_out_reason(
    source: volumes.DataSource,
    source_labels: dict[str, str],
    containers: Iterable[volumes.ContainerInfo],
) -> str | None:
    """Return why `source` is skipped (its own label, or a mounting container's), or None."""
    if opts_out(source_labels):
        return f"{source.describe()} has the label {OPT_OUT_LABEL}=false"
    for container in containers:
        if opts_out(container.labels) and volumes.mounts_source(container, source):
            return (
                f"container {container.name}, which mounts it, has the label {OPT_OUT_LABEL}=false"
            )
    return None


def is_internal(volume: volumes.VolumeInfo) -> bool:
    return any(label in volume.labels for label in INTERNAL_VOLUME_LABELS)


@dataclass
class Candidate:
    """A source a run will back up, or the reason it skips it."""

    source: volumes.DataSource
    volume: volumes.VolumeInfo | None
    skipped: str | None = None


def all_volumes(
    every_volume: Iterable[volumes.VolumeInfo],
    containers: list[volumes.ContainerInfo],
    filters: list[LabelFilter],
) -> list[Candidate]:
    """Given the engine's volumes and containers, return the volumes `--all` selects (matching
    every filter, opskit's own excluded), each with its opt-out reason if it has one."""
    chosen = []
    for volume in every_volume:
        if is_internal(volume) or not labels_match(volume.labels, filters):
            continue
        source = volumes.DataSource("volume", volume.name)
        chosen.append(Candidate(source, volume, opt_out_reason(source, volume.labels, containers)))
    return chosen
