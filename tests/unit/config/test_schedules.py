"""Schedules: every accepted form registers the right job on a given scheduler; others fail."""

from __future__ import annotations

import datetime

import pytest
import schedule

from opskit.config.schedules import ACCEPTED_FORMS, parse_schedule

DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "interval", "unit", "at", "weekday", "period"),
    [
        ("every 30 seconds", 30, "seconds", None, None, 30.0),
        ("every 1 second", 1, "seconds", None, None, 1.0),
        ("every 5 minutes", 5, "minutes", None, None, 300.0),
        ("every minute", 1, "minutes", None, None, 60.0),
        ("every 6 hours", 6, "hours", None, None, 6 * 3600.0),
        ("every hour", 1, "hours", None, None, 3600.0),
        ("every 2 days", 2, "days", None, None, 2 * DAY),
        ("every day", 1, "days", None, None, DAY),
        ("daily at 02:30", 1, "days", datetime.time(2, 30), None, DAY),
        ("daily at 2:30", 1, "days", datetime.time(2, 30), None, DAY),
        ("every day at 23:59", 1, "days", datetime.time(23, 59), None, DAY),
        ("every 3 days at 04:00", 3, "days", datetime.time(4, 0), None, 3 * DAY),
        ("monday at 03:00", 1, "weeks", datetime.time(3, 0), "monday", 7 * DAY),
        ("every sunday at 04:15", 1, "weeks", datetime.time(4, 15), "sunday", 7 * DAY),
        ("  Every   Friday AT 22:00 ", 1, "weeks", datetime.time(22, 0), "friday", 7 * DAY),
        ("hourly", 1, "hours", None, None, 3600.0),
        ("hourly at :15", 1, "hours", datetime.time(0, 15), None, 3600.0),
        ("every hour at :45", 1, "hours", datetime.time(0, 45), None, 3600.0),
    ],
)
def test_parse_schedule_registers_the_form_on_the_given_scheduler(
    text, interval, unit, at, weekday, period
):
    scheduler = schedule.Scheduler()
    calls = []

    parsed = parse_schedule(text)
    job = parsed.attach(scheduler, lambda: calls.append(1))

    assert scheduler.jobs == [job]
    assert (job.interval, job.unit, job.at_time, job.start_day) == (interval, unit, at, weekday)
    assert job.next_run is not None
    assert parsed.period_seconds() == period
    assert parsed.text == text.strip()
    job.job_func()
    assert calls == [1]


def test_attach_never_touches_the_module_wide_scheduler():
    before = list(schedule.jobs)

    parse_schedule("daily at 02:30").attach(schedule.Scheduler(), lambda: None)

    assert schedule.jobs == before


def test_every_weekday_is_accepted():
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"):
        job = parse_schedule(f"{day} at 01:00").attach(schedule.Scheduler(), lambda: None)
        assert job.start_day == day


def test_a_daily_run_at_a_time_is_due_at_that_time_next():
    job = parse_schedule("daily at 02:30").attach(schedule.Scheduler(), lambda: None)

    assert (job.next_run.hour, job.next_run.minute) == (2, 30)
    assert job.next_run > datetime.datetime.now()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sometimes",
        "every",
        "every 0 minutes",
        "every 0 days at 02:00",
        "every -5 minutes",
        "every five minutes",
        "daily",
        "daily at 24:00",
        "daily at 02:60",
        "daily at 0230",
        "monday",
        "mondays at 03:00",
        "hourly at 15",
        "hourly at :75",
        "every 2 weeks",
        "0 3 * * *",
    ],
)
def test_parse_schedule_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule(text)


def test_an_unreadable_schedule_names_every_accepted_form():
    with pytest.raises(ValueError) as raised:
        parse_schedule("at midnight")

    message = str(raised.value)
    assert "'at midnight'" in message
    for form in ACCEPTED_FORMS:
        assert form in message


def test_a_schedule_that_is_not_text_is_refused():
    with pytest.raises(ValueError, match="unreadable schedule"):
        parse_schedule(5)  # type: ignore[arg-type]
