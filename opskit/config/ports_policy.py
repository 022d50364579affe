"""Config models for the port audit's policy (allowlist)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PortsPolicy(BaseModel):
    """The `ports:` section of the config."""

    model_config = ConfigDict(extra="forbid")
