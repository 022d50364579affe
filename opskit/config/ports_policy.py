"""Config models for the port audit's policy: the allowlist that silences accepted findings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opskit.ports.model import RuleId

_PORT_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


class AllowEntry(BaseModel):
    """One accepted exposure. A finding is silenced when every field given here matches it."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RuleId] = Field(
        default_factory=list,
        description="Rule ids this entry silences; empty means every rule.",
        examples=[["all-interfaces", "privileged-host-port"]],
    )
    service: str | None = Field(
        default=None,
        description="Compose service name (shell-style wildcards allowed, e.g. 'web-*').",
        examples=["web"],
    )
    container: str | None = Field(
        default=None,
        description="Container name (wildcards allowed); for runtime findings.",
        examples=["traefik"],
    )
    ports: list[int | str] = Field(
        default_factory=list,
        description="Host ports or 'START-END' ranges. When the engine picks the host port, "
        "the container port is matched instead. Empty means every port.",
        examples=[[80, 443], ["8000-8100"]],
    )
    protocol: Literal["tcp", "udp", "sctp"] | None = Field(
        default=None, description="Only this protocol.", examples=["tcp"]
    )
    reason: str | None = Field(
        default=None,
        description="Why this is accepted; for the people who read the config.",
        examples=["public reverse proxy"],
    )

    @field_validator("ports")
    @classmethod
    def _ports_are_ports_or_ranges(cls, ports: list[int | str]) -> list[int | str]:
        for port in ports:
            text = str(port)
            match = _PORT_RANGE.fullmatch(text)
            if match is None:
                raise ValueError(f"{port!r} is not a port or a 'START-END' range")
            start = int(match.group(1))
            end = int(match.group(2) or start)
            if not 0 < start <= end <= 65535:
                raise ValueError(f"{port!r} is not within 1-65535 with START <= END")
        return ports

    @model_validator(mode="after")
    def _says_what_it_allows(self) -> AllowEntry:
        if not (self.rules or self.service or self.container or self.ports):
            raise ValueError(
                "an allow entry needs at least one of rules, service, container, ports "
                "(an empty entry would silence everything)"
            )
        return self

    def port_ranges(self) -> list[tuple[int, int]]:
        """Return the entry's ports as (start, end) pairs."""
        ranges = []
        for port in self.ports:
            start, _, end = str(port).partition("-")
            ranges.append((int(start), int(end or start)))
        return ranges


class PortsPolicy(BaseModel):
    """The `ports:` section of the config."""

    model_config = ConfigDict(extra="forbid")

    allow: list[AllowEntry] = Field(
        default_factory=list,
        description="Findings to accept and leave out of reports and --fail-on.",
        examples=[
            [
                {
                    "service": "web",
                    "ports": [80, 443],
                    "rules": ["all-interfaces", "privileged-host-port"],
                    "reason": "public reverse proxy",
                }
            ]
        ],
    )
