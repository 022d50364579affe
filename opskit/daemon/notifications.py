"""Telling people and dead-man's switches about runs: a webhook on failure and on recovery, and
healthchecks.io-style pings (`<url>/start`, `<url>`, `<url>/fail`).

Nothing here ever raises because a receiver is down, slow or answers an error: a backup must not
fail because its notification did. Each such problem is one structlog warning, with the URL
reduced to scheme, host and port (ping and webhook URLs carry their secret in the path, the
query or the userinfo).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection

from opskit import __version__, errors
from opskit.daemon.report import FAILURE, JobReport
from opskit.log import get_logger
from opskit.untrusted import printable

log = get_logger(__name__)

FAILURE_EVENT, RECOVERY_EVENT = "failure", "recovery"
EVENTS = (FAILURE_EVENT, RECOVERY_EVENT)
USER_AGENT = f"opskit/{__version__}"
# healthchecks.io keeps the first 100 kB of a ping's body; a summary needs far less.
PING_BODY_LIMIT = 10_000
SUMMARY_REASON_LIMIT = 300
URL_SCHEMES = ("http", "https")


class Notifier:
    """Sends a job's pings and webhook events; remembers each job's last outcome (in memory, so
    a restarted daemon announces no recovery for a failure before the restart)."""

    def __init__(
        self,
        webhook_url: str | None,
        notify_on: Collection[str] = (FAILURE_EVENT, RECOVERY_EVENT),
        timeout_seconds: float = 10.0,
    ) -> None:
        """Raise `ConfigError` if `notify_on` names an unknown event or `webhook_url` is not an
        http(s) URL."""
        unknown = sorted(set(notify_on) - set(EVENTS))
        if unknown:
            raise errors.ConfigError(
                f"unknown notification event {printable(unknown[0])!r}",
                f"use {' or '.join(EVENTS)}",
            )
        if webhook_url is not None and not _is_http_url(webhook_url):
            raise errors.ConfigError(
                f"webhook URL {mask_url(webhook_url)} is not an http:// or https:// URL"
            )
        self.webhook_url = webhook_url
        self.notify_on = frozenset(notify_on)
        self.timeout_seconds = timeout_seconds
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._last_outcome: dict[str, str] = {}

    def last_outcomes(self) -> dict[str, str]:
        """Each job's last outcome, to carry over a reload or a restart (see `remember`)."""
        with self._lock:
            return dict(self._last_outcome)

    def remember(self, outcomes: dict[str, str]) -> None:
        """Take over the last outcomes of an earlier notifier: a recovery after a reload or a
        restart is still announced."""
        with self._lock:
            self._last_outcome.update(outcomes)

    def job_started(self, job: str, ping_url: str | None) -> None:
        """Ping `<ping_url>/start`, so the receiver measures the run and knows it is under way."""
        if ping_url:
            self._send(join_ping_url(ping_url, "start"), None, "", f"ping start of {job}")

    def job_finished(self, report: JobReport, ping_url: str | None) -> None:
        """Ping `<ping_url>` (success) or `<ping_url>/fail` with a plain-text summary, and post
        the webhook event this run makes, if any: every failure, and the first success after a
        failure of the same job."""
        event = self._event_of(report)
        text = summary(report, self.host)
        if ping_url:
            url = ping_url if report.ok else join_ping_url(ping_url, "fail")
            body = _plain_text_body(report, text)
            what = f"ping {report.outcome} of {report.job}"
            self._send(url, body, "text/plain; charset=utf-8", what)
        if event is not None and self.webhook_url:
            payload = {
                "event": event,
                "job": report.job,
                "host": self.host,
                "outcome": report.outcome,
                "summary": text,
                "report": report.to_dict(),
            }
            data = json.dumps(payload).encode("utf-8")
            self._send(self.webhook_url, data, "application/json", f"webhook {event}")

    def _event_of(self, report: JobReport) -> str | None:
        """Remember this run's outcome; return the webhook event it makes (None: none)."""
        with self._lock:
            previous = self._last_outcome.get(report.job)
            self._last_outcome[report.job] = report.outcome
        if report.outcome == FAILURE:
            event = FAILURE_EVENT
        elif previous == FAILURE:
            event = RECOVERY_EVENT
        else:
            return None
        return event if event in self.notify_on else None

    def _send(self, url: str, data: bytes | None, content_type: str, what: str) -> None:
        """GET `url` (data None) or POST `data`; log a warning instead of raising on failure."""
        shown = mask_url(url)
        if not _is_http_url(url):
            log.warning("notification URL is not http(s); not sent", what=what, url=shown)
            return
        headers = {"User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read(PING_BODY_LIMIT)
        except urllib.error.HTTPError as exc:
            exc.close()
            log.warning("notification refused", what=what, url=shown, status=exc.code)
        except ValueError as exc:
            # A URL urllib or http.client cannot use; the message quotes the URL, so only the
            # kind of problem is logged.
            log.warning(
                "notification URL is invalid", what=what, url=shown, error=type(exc).__name__
            )
        except (OSError, http.client.HTTPException) as exc:
            # URLError (DNS, refused, TLS) and timeouts are OSErrors.
            reason = getattr(exc, "reason", None) or exc
            log.warning("notification failed", what=what, url=shown, error=printable(str(reason)))
        else:
            log.debug("notification.sent", what=what, url=shown)


def join_ping_url(ping_url: str, suffix: str) -> str:
    """Given a ping URL (with or without a trailing slash, maybe with a query), return it with
    `/suffix` appended to its path: `https://hc-ping.com/abc/` + `fail` is `.../abc/fail`."""
    parts = urllib.parse.urlsplit(ping_url)
    path = parts.path.rstrip("/") + "/" + suffix
    return urllib.parse.urlunsplit(parts._replace(path=path))


def mask_url(url: str) -> str:
    """Given a URL, return only its scheme, host and port, and `/...` if it had more: no user,
    password, path, query or fragment, any of which may be the secret of a webhook or ping."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" if parts.scheme else host
    if port is not None:
        shown += f":{port}"
    if parts.path.strip("/") or parts.query or parts.fragment:
        shown += "/..."
    return printable(shown)


def summary(report: JobReport, host: str) -> str:
    """One line for people: what the run did, and why it failed if it did."""
    job = printable(report.job)
    where = f"on {printable(host)}"
    seconds = f"{report.seconds:.0f} s"
    count = len(report.sources)
    if report.ok:
        stored = sum(source.size for source in report.sources)
        return (
            f"job {job} succeeded {where}: {count} source{'s' if count != 1 else ''}, "
            f"{_describe_bytes(stored)} stored, in {seconds}"
        )
    failed = [source for source in report.sources if not source.ok]
    reasons = []
    if report.error:
        reasons.append(_one_line(report.error))
    if failed:
        first = failed[0]
        reasons.append(
            f"{len(failed)} of {count} sources failed, {printable(first.source)}: "
            f"{_one_line(first.reason) or 'no reason given'}"
        )
    return f"job {job} failed {where} after {seconds}: {'; '.join(reasons) or 'no reason given'}"


def _plain_text_body(report: JobReport, text: str) -> bytes:
    """The ping body: the summary, then one line per source."""
    lines = [text]
    for source in report.sources:
        state = "ok" if source.ok else f"FAILED: {_one_line(source.reason)}"
        drill = {True: ", drill passed", False: ", drill FAILED", None: ""}[source.verified]
        lines.append(
            f"{printable(source.source)}: {state}{drill}, {_describe_bytes(source.size)}, "
            f"{source.seconds:.0f} s"
        )
    body = ("\n".join(lines) + "\n").encode("utf-8")
    if len(body) > PING_BODY_LIMIT:
        body = body[: PING_BODY_LIMIT - 4].decode("utf-8", "ignore").encode("utf-8") + b"...\n"
    return body


def _one_line(text: str) -> str:
    line = printable(" ".join(text.split()))
    if len(line) > SUMMARY_REASON_LIMIT:
        line = line[: SUMMARY_REASON_LIMIT - 3] + "..."
    return line


def _describe_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    units = ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{value:.1f} {units[0]}"


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in URL_SCHEMES and bool(parts.netloc)
