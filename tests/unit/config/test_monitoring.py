"""Metrics and notifications settings."""

from __future__ import annotations

import pydantic
import pytest

from opskit.config.monitoring import Metrics, Notifications, parse_listen


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9133", ("127.0.0.1", 9133)),
        (":9133", ("", 9133)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:9133", ("::1", 9133)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_listen_reads_host_and_port(listen, address):
    assert parse_listen(listen) == address
    assert Metrics(listen=listen).listen_address() == address


@pytest.mark.parametrize(
    "listen", ["9133", "127.0.0.1", "127.0.0.1:0", ":65536", "::1:9133", "host name:80", ":x"]
)
def test_listen_refuses_what_is_not_host_port(listen):
    with pytest.raises(pydantic.ValidationError, match="HOST:PORT|host name or address"):
        Metrics(listen=listen)


def test_no_listen_means_no_endpoint():
    assert Metrics().listen_address() is None


def test_textfile_is_an_absolute_prom_file():
    assert Metrics(textfile="/var/lib/node_exporter/opskit.prom").textfile
    with pytest.raises(pydantic.ValidationError, match="absolute"):
        Metrics(textfile="opskit.prom")
    with pytest.raises(pydantic.ValidationError, match=r"\.prom"):
        Metrics(textfile="/var/lib/node_exporter/opskit.txt")


def test_notifications_default_to_failure_and_recovery():
    assert Notifications().on == ["failure", "recovery"]
    assert Notifications().webhook_url is None


def test_an_unquoted_on_key_in_yaml_means_the_on_field():
    # YAML 1.1 reads `on:` as the boolean true.
    assert Notifications.model_validate({True: ["failure"]}).on == ["failure"]


def test_notification_events_are_checked():
    with pytest.raises(pydantic.ValidationError):
        Notifications(on=["always"])  # type: ignore[list-item]


def test_webhook_url_is_an_http_url():
    with pytest.raises(pydantic.ValidationError, match="http"):
        Notifications(webhook_url="hooks.example.com/x")
