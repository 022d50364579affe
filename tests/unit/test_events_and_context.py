"""Typed events (a message for people, fields for logs) and the run context's caching."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from opskit import events
from opskit.actions.context import RunContext

EVENT_TYPES = [
    kind
    for _, kind in inspect.getmembers(events, inspect.isclass)
    if issubclass(kind, events.Event) and kind is not events.Event
]


def _example(kind: type[events.Event]) -> events.Event:
    values = {}
    for field in dataclasses.fields(kind):
        values[field.name] = {"str": "x", "bool": True, "int": 3, "float": 1.5}.get(
            str(field.type), ("a", "b")
        )
    return kind(**values)


def test_every_event_has_a_unique_name_a_level_and_a_one_line_message() -> None:
    names = [kind.name for kind in EVENT_TYPES]
    assert len(names) == len(set(names)) and "event" not in names
    for kind in EVENT_TYPES:
        example = _example(kind)
        assert kind.level in {"info", "warning", "error"}
        message = example.message()
        assert message and "\n" not in message
        assert set(example.fields()) == {field.name for field in dataclasses.fields(kind)}


def test_a_stopping_notice_names_the_containers() -> None:
    event = events.ContainersStopping(("web", "worker"))
    assert event.message() == "stopping web, worker"
    assert event.fields() == {"containers": ("web", "worker")}


def test_the_context_opens_each_store_once_and_closes_them(tmp_path: Path) -> None:
    with RunContext() as context:
        first = context.store(str(tmp_path))
        assert context.store(str(tmp_path)) is first
        assert context.store(str(tmp_path / "other")) is not first
    assert context._stores == {}
