"""The config file's schema: one pydantic model drives validation, the example file and the docs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from opskit.config.ports_policy import PortsPolicy
from opskit.config.targets import TargetConfig

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
        examples=[{"offsite": {"url": "s3://ops-backups/docker", "storage_class": "STANDARD_IA"}}],
    )
    ports: PortsPolicy = Field(
        default_factory=PortsPolicy, description="Port audit policy (allowlist)."
    )
    protected_tags: list[str] = Field(
        default=["pre-upgrade", "pre-restore"],
        description="Tags whose backups `volume prune` never removes (unless --no-protect TAG).",
        examples=[["pre-upgrade", "pre-restore", "release"]],
    )

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
