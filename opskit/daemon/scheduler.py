"""`opskit daemon`: run the config's jobs on their schedules, one run at a time, and report.

- The `schedule` library says when a job is due; a due job joins a queue (with its random
  jitter), never twice: a job does not overlap itself, and after downtime (or a suspend)
  it runs once, not once per missed period.
- Runs are serial, in the main thread. Each goes through the CLI's actions, so it takes the
  same per-volume locks as a concurrent `opskit` command (and waits `wait_seconds` for one).
- A failed run is queued again after a backoff that doubles up to `max_backoff_seconds`, for
  `retry.attempts` retries; nothing a run does stops the daemon.
- SIGTERM and SIGINT raise `Interrupted` in the run (the actions abort a partial backup, so
  none is ever listed), then the daemon exits 0. SIGHUP only sets a flag: the config is
  re-read between runs, and an invalid new one is reported while the old one stays.
- Each job's last finished run is kept in a small state file, so that a restarted daemon
  catches up once on a job whose period passed while it was down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import schedule
import structlog

from opskit import errors, events
from opskit.config.jobs import Job
from opskit.config.load import load_config
from opskit.config.schema import Config
from opskit.daemon.metrics import JobMetrics, MetricsServer
from opskit.daemon.notifications import Notifier
from opskit.daemon.report import JobReport
from opskit.daemon.run_job import run_job
from opskit.log import get_logger

log = get_logger("opskit.daemon")

DEFAULT_STATE_FILE = Path("/var/lib/opskit/daemon-state.json")
TICK_SECONDS = 0.5  # how often the idle loop looks at the clock and the reload flag


@dataclass
class Pending:
    """A run waiting in the queue: when it may start, and how many retries came before."""

    due_at: float
    attempt: int = 0
    catch_up: bool = False


class Daemon:
    """The scheduler; `run()` loops until a signal stops it (or, with `once`, one pass)."""

    def __init__(self, config_path: Path | None, state_file: Path | None = DEFAULT_STATE_FILE):
        self.config_path = config_path
        self.state_file = state_file
        self.config: Config = load_config(config_path)  # invalid at start: the caller fails
        self.metrics = JobMetrics()
        self._server: MetricsServer | None = None
        self._scheduler = schedule.Scheduler()
        self._queue: dict[str, Pending] = {}
        self._reload_requested = False
        self._notifier = self._make_notifier(self.config)
        self._last_runs, outcomes = self._read_state()
        self._notifier.remember(outcomes)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Run jobs until SIGTERM/SIGINT; return 0 (a stop is a clean exit)."""
        previous = signal.signal(signal.SIGHUP, self._request_reload)
        try:
            self._start_listener(self.config)
            self._attach(self.config)
            self._queue_catch_ups()
            log.info("daemon.start", jobs=[job.name for job in self.config.jobs])
            while True:
                if self._reload_requested:
                    self._reload()
                self._scheduler.run_pending()
                pending = self._next_pending()
                if pending is None:
                    time.sleep(TICK_SECONDS)
                    continue
                self._run_queued(pending)
        except errors.Interrupted as interrupted:
            log.info("daemon.stop", signal=interrupted.signal_name)
            return 0
        finally:
            signal.signal(signal.SIGHUP, previous)
            self._close_listener()

    def run_once(self, only: str | None = None) -> list[JobReport]:
        """Run every job (or the one named `only`) once, without retries; return the reports.

        Raise `UsageError` if `only` names no job of the config.
        """
        jobs = self.config.jobs
        if only is not None:
            jobs = [job for job in jobs if job.name == only]
            if not jobs:
                known = ", ".join(job.name for job in self.config.jobs) or "none"
                raise errors.UsageError(
                    f"no job named {only!r} in the config (jobs: {known})",
                    "check the name with: opskit config check",
                )
        if not jobs:
            raise errors.UsageError("the config has no jobs", "add jobs: see opskit config example")
        return [self._run(job) for job in jobs]

    # -- one run ---------------------------------------------------------------------------

    def _run_queued(self, name: str) -> None:
        pending = self._queue.pop(name)
        job = self._job(name)
        if job is None:  # removed by a reload while it waited
            return
        report = self._run(job, pending.attempt, pending.catch_up)
        if not report.ok and pending.attempt < job.retry.attempts:
            delay = min(
                job.retry.backoff_seconds * 2**pending.attempt, job.retry.max_backoff_seconds
            )
            log.warning("job.retry", job=name, attempt=pending.attempt + 1, in_seconds=delay)
            self._queue[name] = Pending(time.time() + delay, pending.attempt + 1)

    def _run(self, job: Job, attempt: int = 0, catch_up: bool = False) -> JobReport:
        # Every log line of the run, the actions' own included, names the job.
        with structlog.contextvars.bound_contextvars(job=job.name):
            log.info("job.start", target=job.target, attempt=attempt, catch_up=catch_up)
            self._notifier.job_started(job.name, job.ping_url)
            report = run_job(job, self.config, _log_event)
            self._report(job, report)
        return report

    def _report(self, job: Job, report: JobReport) -> None:
        for source in report.sources:
            log.log(
                20 if source.ok else 40,
                "job.source",
                volume=source.source,
                backup_id=source.backup_id,
                bytes=source.size,
                duration=round(source.seconds, 3),
                verified=source.verified,
                outcome="success" if source.ok else "failure",
                reason=source.reason,
            )
        log.log(
            20 if report.ok else 40,
            "job.done",
            outcome=report.outcome,
            duration=round(report.seconds, 3),
            bytes=sum(source.size for source in report.sources),
            backups=[source.backup_id for source in report.sources if source.backup_id],
            pruned=report.pruned,
            error=report.error,
        )
        self.metrics.record(report)
        if self.config.metrics.textfile:
            try:
                self.metrics.write_textfile(self.config.metrics.textfile)
            except errors.OpskitError as error:
                log.error("metrics.textfile_failed", error=str(error))
        self._notifier.job_finished(report, job.ping_url)
        self._last_runs[job.name] = report.finished_at
        self._write_state()

    # -- scheduling ------------------------------------------------------------------------

    def _attach(self, config: Config) -> None:
        self._scheduler.clear()
        for job in config.jobs:
            job.parsed_schedule().attach(self._scheduler, functools.partial(self._due, job.name))

    def _due(self, name: str) -> None:
        """A schedule fired: queue the run, unless one is queued already (no overlaps)."""
        job = self._job(name)
        if job is None or name in self._queue:
            return
        self._queue[name] = Pending(time.time() + random.uniform(0, job.jitter_seconds))

    def _queue_catch_ups(self) -> None:
        """Queue one run of each job whose period passed since its last run (before a stop)."""
        now = time.time()
        for job in self.config.jobs:
            last = self._last_runs.get(job.name)
            if last is not None and now - last > job.parsed_schedule().period_seconds():
                jitter = random.uniform(0, job.jitter_seconds)
                self._queue[job.name] = Pending(now + jitter, catch_up=True)

    def _next_pending(self) -> str | None:
        """The queued job whose time has come (the earliest), or None."""
        now = time.time()
        ready = [(pending.due_at, name) for name, pending in self._queue.items()
                 if pending.due_at <= now]  # fmt: skip
        return min(ready)[1] if ready else None

    def _job(self, name: str) -> Job | None:
        return next((job for job in self.config.jobs if job.name == name), None)

    # -- reload ----------------------------------------------------------------------------

    def _request_reload(self, signum: int, frame: object) -> None:
        self._reload_requested = True

    def _reload(self) -> None:
        self._reload_requested = False
        try:
            new = load_config(self.config_path)
            notifier = self._make_notifier(new)
            notifier.remember(self._notifier.last_outcomes())
        except errors.OpskitError as error:
            log.error("daemon.reload_failed", error=str(error), kept="the previous config")
            return
        if new.metrics.listen != self.config.metrics.listen:
            self._close_listener()
            try:
                self._start_listener(new)
            except errors.OpskitError as error:
                log.error("daemon.reload_failed", error=str(error), kept="the previous config")
                self._start_listener(self.config)
                return
        self.config, self._notifier = new, notifier
        names = {job.name for job in new.jobs}
        self._queue = {name: pending for name, pending in self._queue.items() if name in names}
        self._attach(new)
        log.info("daemon.reloaded", jobs=sorted(names))

    @staticmethod
    def _make_notifier(config: Config) -> Notifier:
        return Notifier(config.notifications.webhook_url, config.notifications.on)

    def _start_listener(self, config: Config) -> None:
        if config.metrics.listen:
            self._server = self.metrics.serve(config.metrics.listen)

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # -- state -----------------------------------------------------------------------------

    def _read_state(self) -> tuple[dict[str, float], dict[str, str]]:
        """Each job's last run (unix time) and outcome, as the state file holds them."""
        if self.state_file is None:
            return {}, {}
        try:
            document = json.loads(self.state_file.read_text())
            runs = document.get("last_runs", {})
            outcomes = document.get("last_outcomes", {})
            return (
                {str(name): float(when) for name, when in runs.items()},
                {str(name): str(outcome) for name, outcome in outcomes.items()},
            )
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            log.warning("daemon.state_unreadable", file=str(self.state_file), error=str(exc))
            return {}, {}

    def _write_state(self) -> None:
        """Write the last runs atomically (temp file, rename); a failure is only logged."""
        if self.state_file is None:
            return
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=self.state_file.parent, prefix=".daemon-state."
            )
            try:
                with os.fdopen(handle, "w") as stream:
                    state = {
                        "last_runs": self._last_runs,
                        "last_outcomes": self._notifier.last_outcomes(),
                    }
                    json.dump(state, stream)
                os.replace(temporary, self.state_file)
            except BaseException:
                # A SIGTERM or a full disk between mkstemp and the rename: leave no temp file.
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            log.warning("daemon.state_not_written", file=str(self.state_file), error=str(exc))


def _log_event(happened: events.Event) -> None:
    """The event sink of a job's run: each event one log line with its fields."""
    getattr(log, happened.severity())(
        happened.name, message=happened.message(), **happened.fields()
    )
