"""Config models for scheduled jobs: what to back up, where, when, and what to do after."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from opskit import errors
from opskit.config.encryption import Encryption
from opskit.config.monitoring import check_http_url
from opskit.config.schedules import Schedule, parse_schedule
from opskit.repository import retention as retention_rules

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Docker's own rule for volume names.
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Compose project names: lower case, digits, dashes and underscores (compose normalises to it).
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
Compression = Literal["zstd", "gzip", "none"]  # opskit.archive.pipeline.COMPRESSIONS


class VerifyCheck(BaseModel):
    """An application check run on the restored copy during the restore drill."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="Image of the check container, with the restored copy mounted at /data "
        "(never pulled: it must be on the engine).",
        examples=["postgres:16"],
    )
    cmd: str = Field(
        description="The check's command line, run with sh -c in that container; a non-zero "
        "exit fails the drill.",
        examples=["pg_checksums --check -D /data/pgdata"],
    )
    user: str | None = Field(
        default=None,
        description="User (uid[:gid]) the check runs as. Default: the image's user.",
        examples=["999:999"],
    )
    timeout_seconds: float = Field(
        default=600,
        ge=1,
        description="Seconds before the check is killed (and the drill fails).",
        examples=[600],
    )


class JobVerify(BaseModel):
    """`verify:` as a mapping: the restore drill, with an optional application check."""

    model_config = ConfigDict(extra="forbid")

    check: VerifyCheck | None = Field(
        default=None,
        description="Application check run on the restored copy. Default: none (the drill "
        "compares every entry with the archive's listing only).",
        examples=[{"image": "postgres:16", "cmd": "pg_checksums --check -D /data/pgdata"}],
    )


def _verify_form(value: object) -> str:
    # A mapping is the long form; anything else must read as a boolean.
    return "settings" if isinstance(value, dict | JobVerify) else "flag"


VerifySetting = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[JobVerify, Tag("settings")],
    Discriminator(_verify_form),
]


class Retention(BaseModel):
    """Which backups of the job's sources to keep after each run (restic's forget rules)."""

    model_config = ConfigDict(extra="forbid")

    keep_last: int = Field(default=0, ge=0, description="Keep the N newest backups.", examples=[3])
    keep_hourly: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of N hours.", examples=[24]
    )
    keep_daily: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of N days.", examples=[7]
    )
    keep_weekly: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of N weeks.", examples=[4]
    )
    keep_monthly: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of N months.", examples=[6]
    )
    keep_yearly: int = Field(
        default=0, ge=0, description="Keep the newest backup of each of N years.", examples=[2]
    )
    keep_within: str | None = Field(
        default=None,
        description="Keep every backup made within this long of the newest one (years, "
        "months, days, hours: 30d, 1y2m, 2d12h).",
        examples=["30d"],
    )
    keep_tags: list[str] = Field(
        default_factory=list,
        description="Keep every backup with one of these tags.",
        examples=[["release"]],
    )

    @field_validator("keep_within")
    @classmethod
    def _within_is_a_duration(cls, within: str | None) -> str | None:
        if within is not None:
            try:
                retention_rules.Duration.parse(within)
            except errors.UsageError as exc:
                raise ValueError(str(exc)) from exc
        return within

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if self.policy(()).is_empty():
            raise ValueError(
                "retention keeps nothing; set keep_last or another rule, or remove retention"
            )
        return self

    def policy(self, protected_tags: Iterable[str]) -> retention_rules.Policy:
        """Given the config's protected tags, return the policy `opskit.actions.prune` applies."""
        return retention_rules.Policy(
            last=self.keep_last,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
            yearly=self.keep_yearly,
            within=retention_rules.Duration.parse(self.keep_within) if self.keep_within else None,
            tags=tuple(self.keep_tags),
            protected_tags=tuple(protected_tags),
        )


class Retry(BaseModel):
    """How a failed run is retried: after backoff_seconds, doubling up to max_backoff_seconds."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(
        default=3,
        ge=0,
        description="Retries after the first failure (0: none); the next scheduled run comes "
        "anyway.",
        examples=[3],
    )
    backoff_seconds: float = Field(
        default=60,
        gt=0,
        description="Wait before the first retry; each later wait doubles the one before.",
        examples=[60],
    )
    max_backoff_seconds: float = Field(
        default=3600,
        gt=0,
        description="Longest wait between two retries.",
        examples=[3600],
    )

    @model_validator(mode="after")
    def _max_is_not_below_the_first(self) -> Retry:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("max_backoff_seconds is smaller than backoff_seconds")
        return self


class Job(BaseModel):
    """One scheduled backup job: `opskit run NAME` runs it once, the daemon on its schedule."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=100,
        description="The job's name, unique among jobs: letters, digits, '_', '.', '-' "
        "(it names the systemd unit, `opskit run NAME`, and the metrics' job label).",
        examples=["nightly-db"],
    )
    volumes: list[str] = Field(
        default_factory=list,
        description="Volume names or absolute host paths to back up, each its own backup. "
        "Give exactly one of volumes, project and all.",
        examples=[["pgdata", "/srv/app/uploads"]],
    )
    project: str | None = Field(
        default=None,
        description="A compose project, backed up as one snapshot of all its volumes.",
        examples=["shop"],
    )
    all: bool = Field(
        default=False,
        description="Every volume (but those labelled opskit.backup=false, or mounted by a "
        "container labelled so).",
        examples=[True],
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="With all: only volumes with every one of these labels and values.",
        examples=[{"com.example.tier": "db"}],
    )
    target: str = Field(
        description="Where the backups go: a name in targets, an absolute path or "
        "s3://bucket/prefix.",
        examples=["offsite", "/var/backups/opskit"],
    )
    schedule: str = Field(
        description="When to run: every N seconds|minutes|hours|days, daily at HH:MM, "
        "monday..sunday at HH:MM, hourly, hourly at :MM (local time).",
        examples=["daily at 02:30", "every 6 hours", "sunday at 04:00"],
    )
    compress: Compression = Field(
        default="zstd", description="Archive compression: zstd, gzip or none.", examples=["zstd"]
    )
    stop_containers: bool = Field(
        default=False,
        description="Stop the running containers that use a source while it is read, and "
        "start them again after (a consistent copy of a database's files).",
        examples=[True],
    )
    verify: VerifySetting = Field(
        default=False,
        description="After the backup, run the restore drill: true, or a mapping with an "
        "application check.",
        examples=[True, {"check": {"image": "postgres:16", "cmd": "pg_isready"}}],
    )
    retention: Retention | None = Field(
        default=None,
        description="After a successful run, prune the job's sources in the target. "
        "Default: keep everything.",
        examples=[{"keep_daily": 7, "keep_weekly": 4}],
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Tags given to every backup of the job.",
        examples=[["nightly"]],
    )
    jitter_seconds: float = Field(
        default=0,
        ge=0,
        description="Start each run up to this many seconds late, at random (spreads hosts "
        "that share a store).",
        examples=[300],
    )
    retry: Retry = Field(
        default_factory=Retry,
        description="Retries of a failed run.",
        examples=[{"attempts": 3, "backoff_seconds": 60}],
    )
    wait_seconds: float = Field(
        default=0,
        ge=0,
        description="How long a run waits for another opskit run's lock on a source before "
        "it fails.",
        examples=[600],
    )
    ping_url: str | None = Field(
        default=None,
        description="healthchecks.io-style ping URL: /start is called when a run starts, the "
        "URL itself on success, /fail on failure.",
        examples=["https://hc-ping.com/your-check-uuid"],
    )
    encryption: Encryption | None = Field(
        default=None,
        description="Encrypt this job's backups with age; overrides the target's encryption.",
        examples=[{"recipients_file": "/etc/opskit/recipients.txt"}],
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_unit_name(cls, name: str) -> str:
        if not JOB_NAME.fullmatch(name):
            raise ValueError(
                f"job name {name!r} may hold only letters, digits, '_', '.' and '-', "
                "and starts with a letter or digit"
            )
        return name

    @field_validator("volumes")
    @classmethod
    def _volumes_are_names_or_absolute_paths(cls, volumes: list[str]) -> list[str]:
        for volume in volumes:
            if volume.startswith("/"):
                if volume.rstrip("/") == "":
                    raise ValueError("refusing / as a source: name a directory below it")
            elif not VOLUME_NAME.fullmatch(volume):
                raise ValueError(
                    f"{volume!r} is neither a volume name nor an absolute path (the daemon "
                    "has no working directory for a relative one)"
                )
        repeated = sorted({volume for volume in volumes if volumes.count(volume) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return volumes

    @field_validator("project")
    @classmethod
    def _project_is_a_compose_name(cls, project: str | None) -> str | None:
        if project is not None and not PROJECT_NAME.fullmatch(project):
            raise ValueError(
                f"{project!r} is not a compose project name (lower case letters, digits, "
                "'-' and '_')"
            )
        return project

    @field_validator("schedule")
    @classmethod
    def _schedule_is_readable(cls, schedule: str) -> str:
        parse_schedule(schedule)
        return schedule

    @field_validator("ping_url")
    @classmethod
    def _ping_url_is_http(cls, url: str | None) -> str | None:
        return check_http_url(url)

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> Job:
        chosen = [
            name
            for name, given in (
                ("volumes", bool(self.volumes)),
                ("project", self.project is not None),
                ("all", self.all),
            )
            if given
        ]
        if not chosen:
            raise ValueError("say what to back up: give volumes, project or all: true")
        if len(chosen) > 1:
            raise ValueError(
                f"give only one of volumes, project and all (got {' and '.join(chosen)})"
            )
        if self.labels and not self.all:
            raise ValueError("labels choose among all volumes: they need all: true")
        return self

    @property
    def verify_check(self) -> VerifyCheck | None:
        """The application check of the drill, or None (no drill, or a drill without one)."""
        return self.verify.check if isinstance(self.verify, JobVerify) else None

    @property
    def verifies(self) -> bool:
        """Whether each run ends with a restore drill."""
        return isinstance(self.verify, JobVerify) or self.verify is True

    def parsed_schedule(self) -> Schedule:
        """Return the job's schedule, read (it was validated when the config was loaded)."""
        return parse_schedule(self.schedule)
