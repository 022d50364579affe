"""The config file's schema: one pydantic model drives validation, the example file and the docs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from opskit import untrusted
from opskit.config.jobs import Job
from opskit.config.monitoring import Metrics, Notifications
from opskit.config.ports_policy import PortsPolicy
from opskit.config.targets import TargetConfig

# The type of the error `Config` raises for problems between sections; its context holds
# (key path, problem) pairs that `opskit.config.load` reports one by one.
REFERENCE_ERROR = "config_references"
LOCATION_SCHEMES = ("s3", "file")  # as opskit.storage.registry reads them

# Built offline by scripts/setup-engine.sh: busybox plus Debian's GNU tar (most fidelity).
DEFAULT_HELPER_IMAGE = "opskit-helper:gnu-tar"
DEFAULT_TARGET = "/var/backups/opskit"


class Config(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(extra="forbid")

    helper_image: str = Field(
        default=DEFAULT_HELPER_IMAGE,
        description="Image of the temporary helper containers; it needs busybox's sh and "
        "tools, and a tar. With GNU tar (the default, built by scripts/setup-engine.sh) "
        "backups keep large owners, xattrs, ACLs, sparse files and exact mtimes; with busybox "
        "tar (busybox:stable) a backup that would lose one of them fails instead.",
        examples=["opskit-helper:gnu-tar", "busybox:stable"],
    )
    default_target: str = Field(
        default=DEFAULT_TARGET,
        description="Where --to/--from point when not given (a directory, s3://..., or a "
        "target name). The environment variable OPSKIT_TARGET overrides it.",
        examples=["/var/backups/opskit", "offsite"],
    )
    targets: dict[str, TargetConfig] = Field(
        default_factory=dict,
        description="Named backup targets; use the name wherever --to/--from take a location.",
        examples=[
            {
                "local": {"url": "/var/backups/opskit"},
                "offsite": {
                    "url": "s3://acme-backups/prod",
                    "host_prefix": True,
                    "endpoint_url": "https://s3.eu-central-1.amazonaws.com",
                    "storage_class": "STANDARD_IA",
                    "encryption": {
                        "recipients": [
                            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
                        ],
                        "identity_file": "/etc/opskit/age-identity.txt",
                    },
                },
            }
        ],
    )
    jobs: list[Job] = Field(
        default_factory=list,
        description="Scheduled backup jobs: the scheduler daemon runs each on its schedule, "
        "`opskit run NAME` runs one now (from a systemd timer, say).",
        examples=[
            [
                {
                    "name": "nightly-db",
                    "volumes": ["pgdata"],
                    "target": "offsite",
                    "schedule": "daily at 02:30",
                    "compress": "zstd",
                    "stop_containers": True,
                    "verify": {
                        "check": {
                            "image": "postgres:16",
                            "cmd": "pg_checksums --check -D /data/pgdata",
                        }
                    },
                    "retention": {
                        "keep_last": 3,
                        "keep_daily": 7,
                        "keep_weekly": 4,
                        "keep_monthly": 6,
                    },
                    "tags": ["nightly"],
                    "ping_url": "https://hc-ping.com/your-check-uuid",
                },
                {
                    "name": "shop-weekly",
                    "project": "shop",
                    "target": "local",
                    "schedule": "sunday at 04:00",
                    "verify": True,
                    "retention": {"keep_weekly": 8, "keep_tags": ["release"]},
                    "jitter_seconds": 300,
                    "retry": {"attempts": 2, "backoff_seconds": 120, "max_backoff_seconds": 900},
                    "wait_seconds": 600,
                },
                {
                    "name": "tier-db",
                    "all": True,
                    "labels": {"com.example.tier": "db"},
                    "target": "/mnt/backup-disk/opskit",
                    "schedule": "every 6 hours",
                    "compress": "gzip",
                },
            ]
        ],
    )
    ports: PortsPolicy = Field(
        default_factory=PortsPolicy, description="Port audit policy (allowlist)."
    )
    protected_tags: list[str] = Field(
        default=["pre-upgrade", "pre-restore"],
        description="Tags whose backups `volume prune` never removes (unless --no-protect TAG).",
        examples=[["pre-upgrade", "pre-restore", "release"]],
    )
    metrics: Metrics = Field(
        default_factory=Metrics,
        description="Prometheus metrics of the jobs' runs (the daemon serves and writes them).",
    )
    notifications: Notifications = Field(
        default_factory=Notifications,
        description="A webhook called when a job fails or recovers.",
    )

    @model_validator(mode="after")
    def _references_hold(self) -> Config:
        problems = reference_problems(
            [(job.name, job.target) for job in self.jobs], self.targets.keys()
        )
        if problems:
            raise PydanticCustomError(
                REFERENCE_ERROR,
                "{summary}",
                {
                    "summary": "; ".join(f"{path}: {problem}" for path, problem in problems),
                    "problems": problems,
                },
            )
        return self

    def resolve_target(self, location: str) -> TargetConfig:
        """Given a target name or a URL/path, return its settings.

        A name from `targets` wins; a URL equal to a named target's url gets that target's
        settings; anything else is a bare location with default settings.
        """
        if location in self.targets:
            return self.targets[location]
        for target in self.targets.values():
            if target.url.rstrip("/") == location.rstrip("/"):
                return target
        return TargetConfig(url=location)


def reference_problems(
    jobs: Sequence[tuple[object, object]], target_names: Iterable[str]
) -> list[tuple[str, str]]:
    """Given each job's (name, target) as read (either may be missing or of any type) and the
    configured target names, return (key path, problem) pairs: a repeated job name, a target
    that is no configured name, absolute path or URL.
    """
    known = sorted(target_names)
    problems = []
    first_index: dict[str, int] = {}
    for index, (name, target) in enumerate(jobs):
        if isinstance(name, str):
            if name in first_index:
                problems.append(
                    (
                        f"jobs[{index}].name",
                        f"job name {name!r} is already used by jobs[{first_index[name]}]",
                    )
                )
            else:
                first_index[name] = index
        if isinstance(target, str):
            problem = target_problem(target, known)
            if problem is not None:
                problems.append((f"jobs[{index}].target", problem))
    return [(path, untrusted.printable(problem)) for path, problem in problems]


def target_problem(target: str, known: Sequence[str]) -> str | None:
    """Given a job's target and the configured target names, return what is wrong, or None."""
    if target in known or target.startswith("/"):
        return None
    if "://" in target:
        try:
            parts = urlsplit(target)
        except ValueError:  # e.g. "s3://[bucket": an unclosed IPv6 bracket
            return f"{target!r} is not a URL: write s3://bucket/prefix"
        if parts.scheme not in LOCATION_SCHEMES:
            return f"unknown storage scheme in {target!r}: use s3://bucket/prefix or a path"
        if parts.scheme == "s3" and not parts.netloc:
            return f"{target!r} names no bucket: write s3://bucket/prefix"
        return None
    configured = "configured targets: " + ", ".join(known) if known else "no targets are configured"
    kind = "relative path" if "/" in target or target.startswith((".", "~")) else "target"
    return (
        f"unknown {kind} {target!r} ({configured}): a job's target is a target name, "
        "an absolute path or s3://bucket/prefix"
    )
