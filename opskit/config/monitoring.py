"""Config models for what the daemon tells the outside: Prometheus metrics and webhooks."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NotifyEvent = Literal["failure", "recovery"]

_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*")


def check_http_url(url: str | None) -> str | None:
    """Given a URL (or None), return it. Raise ValueError unless it is http(s)://host..."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    return url


def parse_listen(text: str) -> tuple[str, int]:
    """Given `HOST:PORT`, `[IPV6]:PORT` or `:PORT`, return (host, port); the host is "" for every
    interface and has no brackets. Raise ValueError if it is none of them."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 1-65535 (e.g. 127.0.0.1:9133)")
    if host and not _HOST.fullmatch(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address (IPv6 goes in [])")
    return host.strip("[]"), int(port)


class Metrics(BaseModel):
    """The `metrics:` section: Prometheus metrics of the jobs' runs."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(
        default=None,
        description="Address to serve /metrics on, HOST:PORT or :PORT (every interface). "
        "Default: no HTTP endpoint. The metrics say which volumes exist and when backups "
        "ran: prefer 127.0.0.1 unless a firewall guards the port.",
        examples=["127.0.0.1:9133", ":9133"],
    )
    textfile: str | None = Field(
        default=None,
        description="Also write the metrics to this file after every run, for node_exporter's "
        "textfile collector (an absolute path ending in .prom; written atomically).",
        examples=["/var/lib/node_exporter/textfile_collector/opskit.prom"],
    )

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, listen: str | None) -> str | None:
        if listen is not None:
            parse_listen(listen)
        return listen

    @field_validator("textfile")
    @classmethod
    def _textfile_is_a_prom_file(cls, textfile: str | None) -> str | None:
        if textfile is None:
            return None
        path = PurePosixPath(textfile)
        if not path.is_absolute():
            raise ValueError(f"{textfile!r} is not an absolute path")
        if path.suffix != ".prom":
            raise ValueError(f"{textfile!r} does not end in .prom (node_exporter reads only those)")
        return textfile

    def listen_address(self) -> tuple[str, int] | None:
        """Return (host, port) to serve on ("" is every interface), or None if not serving."""
        return None if self.listen is None else parse_listen(self.listen)


class Notifications(BaseModel):
    """The `notifications:` section: a webhook called when jobs fail or recover."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(
        default=None,
        description="URL that receives a JSON POST about a job's run (Slack-style incoming "
        "webhooks, ntfy, a chat bridge). Default: no notifications.",
        examples=["https://hooks.example.com/services/opskit"],
    )
    on: list[NotifyEvent] = Field(
        default=["failure", "recovery"],
        description="Which runs are notified: failure (every failed run) and recovery (the "
        "first success after a failure).",
        examples=[["failure", "recovery"], ["failure"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _unquoted_on_key(cls, data: object) -> object:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true; it means this field.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, url: str | None) -> str | None:
        return check_http_url(url)
