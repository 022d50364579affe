"""The scheduler daemon and `opskit run` on the real engine, run as systemd would run them: a
subprocess with JSON log lines on stdout, stopped and reloaded with real signals.

Schedules are `every 1 seconds` / `every 2 seconds` on tiny volumes; every wait polls the log,
the store or the engine against a deadline.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import trees
from tests.integration.daemon_fixtures import (
    PARTIAL_PREFIX,
    DaemonProcess,
    assert_store_is_whole,
    free_port,
    leftovers_of,
    locks_held_by,
    receiving,
    remove_leftovers_of,
    start_daemon,
    stored_records,
    wait_until,
    write_config,
)
from tests.integration.opskit_cli import (
    HELPER_LABEL,
    REPOSITORY,
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    describe,
    finish,
    list_backups,
    opskit_command,
    opskit_environment,
    run_opskit,
    start_opskit,
)

pytestmark = pytest.mark.integration

# A pre-backup hook that holds the first backup (and with it the volume's lock) until the test
# creates /tmp/release in the hook's container; later backups pass straight through.
HOLD_FIRST_BACKUP = (
    "if [ ! -e /tmp/held ]; then touch /tmp/held; "
    "while [ ! -e /tmp/release ]; do sleep 0.1; done; fi"
)
FAST_RETRY = {"attempts": 10, "backoff_seconds": 1, "max_backoff_seconds": 1}


@pytest.fixture
def daemons(docker_client):
    """Start daemons with `daemons.start(...)`; teardown kills any still running."""
    started: list[DaemonProcess] = []

    class Starter:
        def start(self, config: Path, state_file: Path, *options: str) -> DaemonProcess:
            daemon = start_daemon(config, state_file, *options)
            started.append(daemon)
            return daemon

    yield Starter()
    for daemon in started:
        daemon.kill()
        remove_leftovers_of(docker_client, daemon.pid)


def small_volume(resources, docker_client, name: str) -> str:
    volume = resources.volume(name)
    trees.populate_files(docker_client, volume, {"app/state.txt": "state of the app\n"})
    return volume


def job(name: str, volume: str, store: Path, schedule: str = "every 1 seconds", **settings):
    return {
        "name": name,
        "volumes": [volume],
        "target": str(store),
        "schedule": schedule,
        **settings,
    }


def config_file(tmp_path: Path, *jobs: dict, **sections: Any) -> Path:
    return write_config(tmp_path / "opskit.yaml", {"jobs": list(jobs), **sections})


def assert_nothing_left(docker_client, daemon: DaemonProcess, store: Path) -> list[dict]:
    """No helper, lock or scratch volume of the daemon's, and only whole backups in `store`."""
    assert leftovers_of(docker_client, daemon.pid) == [], daemon.describe()
    return assert_store_is_whole(store)


def assert_clean_stop(daemon: DaemonProcess, code: int) -> None:
    assert code == 0, f"the daemon exited {code} on SIGTERM\n{daemon.describe()}"
    assert daemon.events("daemon.stop", signal="SIGTERM"), daemon.describe()
    assert not any("Traceback" in line for line in daemon.stderr_lines), daemon.describe()


def outcomes(daemon: DaemonProcess, name: str) -> list[str]:
    return [record["outcome"] for record in daemon.events("job.done", job=name)]


# -- the loop: backups, drills, pruning, a clean stop ----------------------------------------


def test_daemon_backs_up_drills_prunes_and_stops_cleanly_on_sigterm(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-data")
    store = tmp_path / "store"
    config = config_file(
        tmp_path, job("loop", volume, store, verify=True, retention={"keep_last": 2})
    )
    started = time.time()
    daemon = daemons.start(config, tmp_path / "state" / "daemon.json")

    most_listed = 0

    def three_verified_runs() -> bool:
        nonlocal most_listed
        most_listed = max(most_listed, len(stored_records(store)))
        return outcomes(daemon, "loop").count("success") >= 3

    daemon.wait(three_verified_runs, 90, "three successful runs")
    code = daemon.stop()

    assert_clean_stop(daemon, code)
    done = daemon.events("job.done", job="loop")
    assert [record["outcome"] for record in done] == ["success"] * len(done), daemon.describe()
    made = [backup_id for record in done for backup_id in record["backups"]]
    assert len(made) == len(set(made)) >= 3
    drilled = daemon.events("job.source", job="loop", verified=True)
    assert {record["backup_id"] for record in drilled} >= set(made)
    # keep_last 2: a run adds the third backup, its prune brings the store back to two.
    assert most_listed <= 3, f"{most_listed} backups were listed at once"
    assert sum(record["pruned"] for record in done) >= len(made) - 2
    records = assert_nothing_left(docker_client, daemon, store)
    listed = list_backups(store)
    assert {item["id"] for item in listed} == {record["id"] for record in records}
    assert 1 <= len(listed) <= 3
    assert made[-1] in {item["id"] for item in listed}, "retention removed the newest backup"
    # Every backup of a finished run passed its drill, and the store says so.
    finished = [record for record in records if record["id"] in set(made)]
    assert finished and all(record["verified_ok"] is True for record in finished), records
    assert all("scheduled" in record["tags"] for record in records)
    # The state file says when the job last ran; no temp file of its atomic write remains.
    state = json.loads((tmp_path / "state" / "daemon.json").read_text())
    assert state["last_outcomes"] == {"loop": "success"}
    assert started < state["last_runs"]["loop"] <= time.time()
    assert [path.name for path in (tmp_path / "state").iterdir()] == ["daemon.json"]


def test_sigterm_during_a_backup_in_flight_leaves_no_partial_backup(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-big")
    trees.populate_random(docker_client, volume, megabytes=320, files=4)
    store = tmp_path / "store"
    config = config_file(tmp_path, job("big", volume, store, verify=True))
    daemon = daemons.start(config, tmp_path / "daemon.json")

    daemon.wait_for_event("backup.start", job="big")

    def bytes_in_flight() -> bool:
        partials = list(store.glob(f"{PARTIAL_PREFIX}*")) if store.is_dir() else []
        return any(path.stat().st_size > 0 for path in partials if path.exists())

    daemon.wait(bytes_in_flight, 60, "the archive's bytes arriving in the store")
    daemon.send(signal.SIGTERM)
    code = daemon.wait_exit()

    assert_clean_stop(daemon, code)
    assert not daemon.events("backup.done"), "the backup finished before the signal came"
    assert not daemon.events("job.done"), daemon.describe()
    assert assert_nothing_left(docker_client, daemon, store) == []
    assert list_backups(store) == []
    assert not (tmp_path / "daemon.json").exists(), "an interrupted run was recorded as a run"


def test_sigkill_during_a_backup_in_flight_is_cleaned_by_the_next_commands(
    docker_client, resources, daemons, unique_name, tmp_path
):
    """SIGKILL leaves what the run had made; the next `list` of the store removes its partial
    file, and the next command on the engine its helper and lock."""
    volume = resources.volume(f"{unique_name}-big")
    trees.populate_random(docker_client, volume, megabytes=160, files=2)
    store = tmp_path / "store"
    config = config_file(tmp_path, job("big", volume, store, verify=True))
    daemon = daemons.start(config, tmp_path / "daemon.json")

    def bytes_in_flight() -> bool:
        partials = list(store.glob(f"{PARTIAL_PREFIX}*")) if store.is_dir() else []
        return any(path.stat().st_size > 0 for path in partials if path.exists())

    daemon.wait(bytes_in_flight, 60, "the archive's bytes arriving in the store")
    daemon.send(signal.SIGKILL)
    assert daemon.wait_exit() == -signal.SIGKILL

    assert list_backups(store) == []  # and the partial file is gone
    assert assert_store_is_whole(store) == []
    small = small_volume(resources, docker_client, f"{unique_name}-next")
    backed_up = run_opskit("volume", "backup", small, "--to", str(tmp_path / "other"))
    assert backed_up.returncode == 0, describe(backed_up)
    assert leftovers_of(docker_client, daemon.pid) == [], daemon.describe()
    assert not (tmp_path / "daemon.json").exists(), "a killed run was recorded as a run"


def test_sigterm_during_the_restore_drill_removes_its_scratch_volume(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-big")
    trees.populate_random(docker_client, volume, megabytes=320, files=4)
    store = tmp_path / "store"
    config = config_file(tmp_path, job("big", volume, store, verify=True))
    daemon = daemons.start(config, tmp_path / "daemon.json")

    scratch = daemon.wait_for_event("volume.created", job="big")["volume"]
    # The restore into it is under way once a helper mounts it. One API call per poll (not
    # helpers_using's inspect of every helper): the drill's restore takes a few seconds only.
    helper_filter = {"label": HELPER_LABEL, "volume": scratch}
    daemon.wait(
        lambda: docker_client.api.containers(filters=helper_filter), 30, "the drill's restore"
    )
    daemon.send(signal.SIGTERM)
    code = daemon.wait_exit()

    assert_clean_stop(daemon, code)
    assert not daemon.events("verify.done"), "the drill finished before the signal came"
    assert not daemon.events("job.done"), daemon.describe()
    assert leftovers_of(docker_client, daemon.pid) == [], daemon.describe()
    assert scratch not in [item.name for item in docker_client.volumes.list()]
    # The backup itself was whole before the drill began: it stays, not marked verified.
    [record] = assert_store_is_whole(store)
    assert record["verified_ok"] is not True
    assert [item["id"] for item in list_backups(store)] == [record["id"]]


# -- SIGHUP ----------------------------------------------------------------------------------


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_when_invalid(
    docker_client, resources, daemons, unique_name, tmp_path
):
    first = small_volume(resources, docker_client, f"{unique_name}-first")
    second = small_volume(resources, docker_client, f"{unique_name}-second")
    store = tmp_path / "store"
    config = config_file(tmp_path, job("first", first, store, "every 2 seconds"))
    daemon = daemons.start(config, tmp_path / "daemon.json")
    daemon.wait_for_event("job.done", job="first", outcome="success")

    config_file(
        tmp_path,
        job("first", first, store, "every 2 seconds"),
        job("second", second, store, "every 1 seconds"),
    )
    daemon.send(signal.SIGHUP)

    reloaded = daemon.wait_for_event("daemon.reloaded", timeout=30)
    assert reloaded["jobs"] == ["first", "second"]
    daemon.wait_for_event("job.done", job="second", outcome="success", timeout=30)

    valid_text = config.read_text()
    config.write_text(valid_text.replace("schedule: every 1 seconds", "shedule: every 1 seconds"))
    daemon.send(signal.SIGHUP)

    failed = daemon.wait_for_event("daemon.reload_failed", timeout=30)
    assert "jobs[1].shedule" in failed["error"] and "unknown key" in failed["error"], failed
    after = len(daemon.records())
    # Both jobs of the config that was valid keep running.
    for name in ("first", "second"):
        daemon.wait(
            lambda name=name: any(
                record.get("event") == "job.done"
                and record.get("job") == name
                and record.get("outcome") == "success"
                for record in daemon.records()[after:]
            ),
            30,
            f"a run of {name} after the failed reload",
        )
    assert len(daemon.events("daemon.reloaded")) == 1
    code = daemon.stop()
    assert_clean_stop(daemon, code)
    assert_nothing_left(docker_client, daemon, store)


# -- locks shared with the CLI ---------------------------------------------------------------


def hold_backups_of(resources, volume: str):
    """A running container on `volume` whose pre-backup hook holds the first backup (and so
    the volume's lock) until `release(container)`."""
    return resources.container(
        command=STOPPABLE_COMMAND,
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        labels={"opskit.backup.pre": HOLD_FIRST_BACKUP},
    )


def release(container) -> None:
    result = container.exec_run(["touch", "/tmp/release"])
    assert result.exit_code == 0, result.output


def test_a_locked_volume_fails_the_daemons_run_which_is_retried_until_it_succeeds(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-shared")
    holder = hold_backups_of(resources, volume)
    store = tmp_path / "store"
    cli = start_opskit("volume", "backup", volume, "--to", str(tmp_path / "cli-store"), "--json")
    try:
        wait_until(lambda: locks_held_by(docker_client, cli.pid), 60, "the CLI's lock")
        config = config_file(
            tmp_path, job("shared", volume, store, wait_seconds=0, retry=FAST_RETRY)
        )
        daemon = daemons.start(config, tmp_path / "daemon.json")

        failed = daemon.wait_for_event("job.source", job="shared", outcome="failure")
        assert "locked" in failed["reason"] and f"pid {cli.pid}" in failed["reason"], failed
        retry = daemon.wait_for_event("job.retry", job="shared")
        assert retry["attempt"] == 1 and retry["in_seconds"] == 1
    finally:
        release(holder)
    result = finish(cli, timeout=60)
    assert result.returncode == 0, describe(result)

    done = daemon.wait_for_event("job.done", job="shared", outcome="success", timeout=60)
    retried = [r for r in daemon.events("job.start", job="shared") if r["attempt"] > 0]
    assert retried, "the success was not a retry"
    assert done["backups"], done
    code = daemon.stop()
    assert_clean_stop(daemon, code)
    assert len(assert_nothing_left(docker_client, daemon, store)) >= 1
    assert leftovers_of(docker_client, cli.pid) == []


def test_the_cli_fails_on_a_volume_the_daemon_holds_or_waits_with_wait(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-busy")
    holder = hold_backups_of(resources, volume)
    store = tmp_path / "store"
    config = config_file(tmp_path, job("busy", volume, store, "every 2 seconds"))
    daemon = daemons.start(config, tmp_path / "daemon.json")
    waiting = None
    try:
        daemon.wait(lambda: locks_held_by(docker_client, daemon.pid), 60, "the daemon's lock")

        refused = run_opskit("volume", "backup", volume, "--to", str(tmp_path / "cli"))

        line = assert_failed_with_one_line(refused, "locked", f"pid {daemon.pid}", "--wait")
        assert volume in line
        waiting_log = tmp_path / "waiting.stderr"
        with waiting_log.open("w") as stderr:
            waiting = subprocess.Popen(
                opskit_command(
                    "volume",
                    "backup",
                    volume,
                    "--to",
                    str(tmp_path / "cli"),
                    "--wait",
                    "60",
                    "--json",
                ),
                cwd=REPOSITORY,
                env=opskit_environment(),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        # It says it waits, and waits, for as long as the daemon holds the lock.
        wait_until(lambda: "waiting for another" in waiting_log.read_text(), 60, "the notice")
        assert waiting.poll() is None, "the CLI with --wait did not wait for the lock"
        notice = waiting_log.read_text()
        assert f"pid {daemon.pid}" in notice and volume in notice, notice
    finally:
        release(holder)
    assert waiting is not None
    stdout, _ = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, waiting_log.read_text()
    assert json.loads(stdout)["source"] == volume
    daemon.wait_for_event("job.done", job="busy", outcome="success")
    code = daemon.stop()
    assert_clean_stop(daemon, code)
    assert_nothing_left(docker_client, daemon, store)
    assert len(list_backups(tmp_path / "cli")) == 1


# -- config errors ---------------------------------------------------------------------------


def test_daemon_with_an_invalid_config_exits_2_naming_the_key(tmp_path):
    bad = write_config(
        tmp_path / "bad.yaml",
        {
            "jobs": [
                {
                    "name": "ok",
                    "volumes": ["data"],
                    "target": "/backups",
                    "schedule": "every 1 hours",
                },
                {
                    "name": "typo",
                    "volumes": ["data"],
                    "target": "/backups",
                    "shedule": "every 1 hours",
                    "retention": {"keep_last": -1},
                },
            ]
        },
    )

    result = run_opskit(
        "daemon", "--config", str(bad), "--state-file", str(tmp_path / "s.json"), "--log-json"
    )

    line = assert_failed_with_one_line(
        result, "jobs[1].shedule", "unknown key", "jobs[1].retention.keep_last", exit_code=2
    )
    assert str(bad) in line
    assert "daemon.start" not in result.stdout
    assert not (tmp_path / "s.json").exists()


def test_daemon_exits_2_when_its_metrics_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_file(
            tmp_path,
            job("nightly", "pgdata", tmp_path / "store", "daily at 02:30"),
            metrics={"listen": f"127.0.0.1:{port}"},
        )

        result = run_opskit(
            "daemon", "--config", str(config), "--state-file", str(tmp_path / "s.json")
        )

    assert_failed_with_one_line(result, f"127.0.0.1:{port}", "address already in use", exit_code=2)
    assert "daemon.start" not in result.stdout


def test_run_of_an_unknown_job_exits_2_naming_the_known_jobs(tmp_path):
    config = config_file(
        tmp_path,
        job("nightly-db", "pgdata", Path("/backups"), "daily at 02:30"),
        job("hourly-www", "www", Path("/backups"), "hourly"),
    )

    result = run_opskit("run", "nope", "--config", str(config))

    assert_failed_with_one_line(result, "'nope'", "nightly-db", "hourly-www", exit_code=2)


# -- opskit run and daemon --once ------------------------------------------------------------


def log_lines(stdout: str) -> list[dict[str, Any]]:
    """Each line of `stdout` as JSON; fail on a line that is not a JSON object."""
    records = []
    for line in stdout.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_run_exits_0_on_success_and_1_when_the_backup_or_the_drill_fails(
    docker_client, resources, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-data")
    missing = f"{unique_name}-missing"
    store = tmp_path / "store"
    config = config_file(
        tmp_path,
        job("good", volume, store, verify=True),
        job("gone", missing, store),
        job(
            "bad-drill",
            volume,
            store,
            verify={"check": {"image": "busybox:stable", "cmd": "echo broken; exit 3"}},
        ),
    )

    good = run_opskit("run", "good", "--config", str(config))
    assert good.returncode == 0, describe(good)
    assert good.stderr.strip() == "", describe(good)
    done = [r for r in log_lines(good.stdout) if r["event"] == "job.done"]
    assert [(r["job"], r["outcome"]) for r in done] == [("good", "success")]
    assert stored_records(store)[0]["verified_ok"] is True

    gone = run_opskit("run", "gone", "--config", str(config))
    assert gone.returncode == 1, describe(gone)
    assert gone.stderr.splitlines() == [
        f"job gone failed: {missing}: volume {missing} does not exist: check the name with: "
        "docker volume ls"
    ], describe(gone)
    assert [r["outcome"] for r in log_lines(gone.stdout) if r["event"] == "job.done"] == ["failure"]

    drill = run_opskit("run", "bad-drill", "--config", str(config), "--json")
    assert drill.returncode == 1, describe(drill)
    report = json.loads(drill.stdout)  # --json: the report alone on stdout, logs on stderr
    assert report["outcome"] == "failure"
    [source] = report["sources"]
    assert source["verified"] is False and "exited 3: broken" in source["reason"], report
    notices = [line for line in drill.stderr.splitlines() if not line.startswith("{")]
    assert notices == [f"job bad-drill failed: {volume}: {source['reason']}"], describe(drill)
    assert "job.done" in drill.stderr
    assert_store_is_whole(store)


def test_daemon_once_runs_every_job_once_and_fails_if_one_failed(
    docker_client, resources, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-data")
    store = tmp_path / "store"
    jobs = [job("first", volume, store), job("second", f"{unique_name}-missing", store)]
    config = config_file(tmp_path, *jobs)
    state = tmp_path / "daemon.json"

    failing = run_opskit("daemon", "--once", "--config", str(config), "--state-file", str(state))

    assert failing.returncode == 1, describe(failing)
    done = [r for r in log_lines(failing.stdout) if r["event"] == "job.done"]
    assert [(r["job"], r["outcome"]) for r in done] == [("first", "success"), ("second", "failure")]
    assert len(failing.stderr.splitlines()) == 1 and "job second failed" in failing.stderr
    assert json.loads(state.read_text())["last_outcomes"] == {
        "first": "success",
        "second": "failure",
    }
    assert len(list_backups(store)) == 1

    config_file(tmp_path, jobs[0])
    passing = run_opskit("daemon", "--once", "--config", str(config), "--state-file", str(state))

    assert passing.returncode == 0, describe(passing)
    assert len(list_backups(store)) == 2


# -- metrics ---------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return samples_of(text)


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_running_daemon_serves_metrics_and_writes_the_textfile(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-data")
    port = free_port()
    textfile = tmp_path / "node-exporter" / "opskit.prom"
    textfile.parent.mkdir()
    config = config_file(
        tmp_path,
        job("metered", volume, tmp_path / "store", verify=True),
        metrics={"listen": f"127.0.0.1:{port}", "textfile": str(textfile)},
    )
    started = time.time()
    daemon = daemons.start(config, tmp_path / "daemon.json")
    assert daemon.events("metrics.serving", port=port), daemon.describe()

    done = daemon.wait_for_event("job.done", job="metered", outcome="success")
    labels = (("job", "metered"), ("source", volume))
    samples = daemon.wait(
        lambda: (
            (found := scrape(port)).get(("opskit_backup_last_success_timestamp_seconds", labels))
            and found
        ),
        10,
        "the run's metrics on /metrics",
    )

    last_success = samples[("opskit_backup_last_success_timestamp_seconds", labels)]
    assert started < last_success <= time.time()
    assert samples[("opskit_backup_last_size_bytes", labels)] == done["bytes"] > 0
    assert samples[("opskit_restore_drill_last_passed", labels)] == 1
    assert samples[("opskit_job_failures_total", (("job", "metered"),))] == 0
    assert ("opskit_job_last_success_timestamp_seconds", (("job", "metered"),)) in samples
    written = samples_of(textfile.read_text())
    assert started < written[("opskit_backup_last_success_timestamp_seconds", labels)]
    assert textfile.stat().st_mode & 0o777 == 0o644
    assert [path.name for path in textfile.parent.iterdir()] == ["opskit.prom"]

    code = daemon.stop()
    assert_clean_stop(daemon, code)
    with pytest.raises(OSError):
        scrape(port)  # the listener closed with the daemon


# -- notifications ---------------------------------------------------------------------------


def test_pings_and_webhook_failure_then_recovery(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = f"{unique_name}-late"  # created only once the job has failed
    with receiving() as receiver:
        ping = receiver.url("/ping/3f8e-check")
        config = config_file(
            tmp_path,
            job("notified", volume, tmp_path / "store", ping_url=ping, retry={"attempts": 0}),
            notifications={"webhook_url": receiver.url("/hook/secret")},
        )
        daemon = daemons.start(config, tmp_path / "daemon.json")

        wait_until(lambda: receiver.webhook_events("/hook/"), 60, "the failure webhook")
        small_volume(resources, docker_client, volume)
        daemon.wait(
            lambda: any(e["event"] == "recovery" for e in receiver.webhook_events("/hook/")),
            60,
            "the recovery webhook",
        )
        successes = len(daemon.events("job.done", outcome="success"))
        daemon.wait_for_event("job.done", count=successes + 1, outcome="success")
        code = daemon.stop()
        assert_clean_stop(daemon, code)
        events = receiver.webhook_events("/hook/")
        pings = receiver.received("/ping/")

    failures = outcomes(daemon, "notified").count("failure")
    assert failures >= 1
    # One webhook per failed run, then one recovery; the successes after it are quiet.
    assert [e["event"] for e in events] == ["failure"] * failures + ["recovery"], events
    assert all(e["job"] == "notified" and e["host"] for e in events)
    assert "does not exist" in events[0]["summary"] and volume in events[0]["summary"]
    assert events[0]["report"]["outcome"] == "failure"
    assert events[-1]["outcome"] == "success" and "succeeded" in events[-1]["summary"]
    # Each run pings /start, then the URL itself (success) or /fail with a summary.
    paths = [request.path for request in pings]
    assert set(paths) <= {"/ping/3f8e-check/start", "/ping/3f8e-check", "/ping/3f8e-check/fail"}
    ends = [path for path in paths if not path.endswith("/start")]
    assert paths[0::2] == ["/ping/3f8e-check/start"] * len(paths[0::2]), paths
    assert paths[1::2] == ends, paths
    assert ends[:failures] == ["/ping/3f8e-check/fail"] * failures
    assert ends[failures:] == ["/ping/3f8e-check"] * (len(ends) - failures)
    fail_ping = next(request for request in pings if request.path.endswith("/fail"))
    assert fail_ping.method == "POST" and b"does not exist" in fail_ping.body


# -- catch-up after downtime -----------------------------------------------------------------


def test_a_job_overdue_after_downtime_runs_once_at_start(
    docker_client, resources, daemons, unique_name, tmp_path
):
    volume = small_volume(resources, docker_client, f"{unique_name}-data")
    store = tmp_path / "store"
    config = config_file(
        tmp_path,
        job("overdue", volume, store, "every 1 hours"),
        job("recent", volume, store, "every 1 hours"),
    )
    state = tmp_path / "daemon.json"
    now = time.time()
    state.write_text(
        json.dumps(
            {
                "last_runs": {"overdue": now - 3 * 86400, "recent": now - 60},
                "last_outcomes": {"overdue": "success", "recent": "success"},
            }
        )
    )

    daemon = daemons.start(config, state)

    started = daemon.wait_for_event("job.start", job="overdue", timeout=30)
    assert started["catch_up"] is True
    daemon.wait_for_event("job.done", job="overdue", outcome="success")
    # An idle while: three days missed make one run, not one per missed hour.
    quiet_until = time.monotonic() + 3
    daemon.wait(lambda: time.monotonic() >= quiet_until, 10, "a quiet while")
    assert [r["job"] for r in daemon.events("job.start")] == ["overdue"], daemon.describe()
    code = daemon.stop()
    assert_clean_stop(daemon, code)
    written = json.loads(state.read_text())
    assert written["last_runs"]["overdue"] > now
    assert written["last_runs"]["recent"] == pytest.approx(now - 60)
    assert len(list_backups(store)) == 1
