"""What one run of a job did: the record metrics and notifications are made from."""

from __future__ import annotations

from dataclasses import dataclass, field

SUCCESS, FAILURE = "success", "failure"


@dataclass
class SourceReport:
    """One source of a job's run."""

    source: str  # a volume name or an absolute host path
    ok: bool
    backup_id: str | None = None  # None when no backup was stored
    size: int = 0  # bytes stored (the compressed archive)
    seconds: float = 0.0  # how long its backup took
    verified: bool | None = None  # the restore drill: passed, failed, or not run (None)
    # created time (unix seconds) of the newest backup of this source that passed a drill,
    # as listed in the store after the run; None if there is none
    newest_verified_at: float | None = None
    reason: str = ""  # one line, when not ok


@dataclass
class JobReport:
    """One run of a job: backup, drill, prune."""

    job: str
    started_at: float  # unix seconds
    finished_at: float
    sources: list[SourceReport] = field(default_factory=list)
    error: str = ""  # the run's own failure (one line), e.g. the store was unreachable
    pruned: int = 0  # backups removed by retention

    @property
    def ok(self) -> bool:
        return not self.error and all(source.ok for source in self.sources)

    @property
    def outcome(self) -> str:
        return SUCCESS if self.ok else FAILURE

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at

    def to_dict(self) -> dict:
        return {
            "job": self.job,
            "outcome": self.outcome,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "pruned": self.pruned,
            "sources": [vars(source) for source in self.sources],
        }
