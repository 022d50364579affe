"""One run of a configured job: back up, then the restore drill, then prune, then report.

Used by the daemon for each due run and by `opskit run JOB` (the cron and systemd-timer mode).
Every step goes through the same actions (and so the same locks) as the CLI. Nothing here
raises for a failed step: the `JobReport` says what failed; only `Interrupted` propagates,
after the actions cleaned up.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from opskit import errors, events
from opskit.actions.backup import BackupManyRequest, run_backups
from opskit.actions.backup_set import BACKED_UP
from opskit.actions.context import RunContext
from opskit.actions.prune import PruneRequest, run_prune
from opskit.actions.snapshot import SnapshotRequest, run_snapshot
from opskit.actions.verify import VerifyRequest, run_verify
from opskit.config.encryption import Encryption
from opskit.config.jobs import Job
from opskit.config.schema import Config
from opskit.daemon.report import JobReport, SourceReport
from opskit.log import get_logger
from opskit.repository import catalog
from opskit.volume_ops.back_up import BackupOptions

log = get_logger(__name__)

JOB_TAG = "scheduled"  # every backup a job makes has it, besides the job's own tags


def run_job(job: Job, config: Config, emit: events.EventSink) -> JobReport:
    """Given a job of `config`, run it once. Return its report (failures included)."""
    report = JobReport(job=job.name, started_at=time.time(), finished_at=0.0)
    # The drill's identity: the job's, else $OPSKIT_AGE_IDENTITY_FILE, else the target's.
    identity = job.encryption.identity_file if job.encryption else None
    # The context is inside the try: opening it (an identity file) and closing its engines
    # and stores can fail too, and that must fail this run, never stop the daemon.
    try:
        with RunContext(config, emit, Path(identity) if identity else None) as context:
            _back_up(job, context, report)
            if job.verifies:
                _drill(job, context, report)
            if job.retention is not None and report.ok:
                _prune(job, context, report)
            _newest_verified(job, context, report)
    except errors.OpskitError as error:
        report.error = _joined(report.error, str(error))
    except Exception as bug:  # noqa: BLE001 - a bug in one run must not stop the daemon
        log.error("job.internal_error", job=job.name, exc_info=True)
        report.error = _joined(report.error, f"internal error: {type(bug).__name__}: {bug}")
    report.finished_at = time.time()
    return report


def _joined(first: str, second: str) -> str:
    """The run's errors on one line: a later step's error does not hide an earlier one."""
    return "; ".join(text for text in (first, second) if text)


def _back_up(job: Job, context: RunContext, report: JobReport) -> None:
    tags = list(dict.fromkeys([JOB_TAG, *job.tags]))
    progress = events.progress_reporter(context.emit, f"job {job.name}")
    if job.project is not None:
        started = time.monotonic()
        request = SnapshotRequest(
            project=job.project,
            to=job.target,
            tag=tags[-1] if job.tags else JOB_TAG,
            stop_containers=job.stop_containers,
            compression=job.compress,
            wait_seconds=job.wait_seconds,
            encryption=job.encryption or Encryption(),
        )
        snapshot = run_snapshot(request, context, on_progress=progress)
        seconds = time.monotonic() - started
        for record in snapshot.backups:
            report.sources.append(
                SourceReport(record.source, True, record.id, record.size, seconds)
            )
        if snapshot.errors:
            report.error = "; ".join(snapshot.errors)
        return
    many = BackupManyRequest(
        sources=list(job.volumes),
        to=job.target,
        all_volumes=job.all,
        labels=[f"{key}={value}" for key, value in job.labels.items()],
        options=BackupOptions(
            compression=job.compress,
            tags=tags,
            stop_containers=job.stop_containers,
            wait_seconds=job.wait_seconds,
        ),
        encryption=job.encryption or Encryption(),
    )
    timings: dict[str, float] = {}
    emit = context.emit

    def timed(happened: events.Event) -> None:
        if isinstance(happened, events.BackupWritten):
            timings[happened.backup_id] = happened.seconds
        emit(happened)

    context.emit = timed
    try:
        outcome = run_backups(many, context, on_progress=progress)
    finally:
        context.emit = emit
    for item in outcome.outcomes:
        if item.status == BACKED_UP and item.record is not None:
            seconds = timings.get(item.record.id, 0.0)
            record = item.record
            report.sources.append(
                SourceReport(item.source.name, True, record.id, record.size, seconds)
            )
        elif item.status != "skipped":
            report.sources.append(SourceReport(item.source.name, False, reason=item.reason))
    if outcome.errors:
        report.error = "; ".join(outcome.errors)


def _drill(job: Job, context: RunContext, report: JobReport) -> None:
    """Restore each new backup into a scratch volume and compare it (and check it)."""
    check = job.verify_check
    for source in report.sources:
        if source.backup_id is None:
            continue
        request = VerifyRequest(
            from_=job.target,
            volume=source.source,
            backup=source.backup_id,
            check_image=check.image if check else None,
            check_command=["sh", "-c", check.cmd] if check else [],
            check_user=check.user if check else None,
            check_timeout=check.timeout_seconds if check else 600.0,
        )
        try:
            verification = run_verify(request, context).verifications[0]
        except errors.OpskitError as error:
            source.ok, source.verified, source.reason = False, False, f"drill: {error}"
            continue
        source.verified = verification.ok
        if not verification.ok:
            source.ok, source.reason = False, f"drill failed: {verification.reason}"


def _prune(job: Job, context: RunContext, report: JobReport) -> None:
    """Apply the job's retention to each source it backed up (never to other sources)."""
    assert job.retention is not None
    policy = job.retention.policy(context.config.protected_tags)
    for source in report.sources:
        result = run_prune(PruneRequest(job.target, policy, volume=source.source), context)
        report.pruned += sum(1 for backup in result.backups if backup.removed)


def _newest_verified(job: Job, context: RunContext, report: JobReport) -> None:
    """Fill in each source's newest backup that passed a drill, from the store's listing."""
    if not report.sources:
        return
    listing = catalog.list_records(context.store(job.target))
    for source in report.sources:
        passed = [
            record
            for record in listing
            if record.source == source.source and record.verified_ok is True
        ]
        if passed:
            newest = max(passed, key=lambda record: record.created)
            source.newest_verified_at = datetime.fromisoformat(
                newest.created.replace("Z", "+00:00")
            ).timestamp()
