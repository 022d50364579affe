"""Label filters and opt-outs of `volume backup --all` and snapshots."""

from __future__ import annotations

import pytest

from opskit import errors
from opskit.actions import selection
from opskit.engine.volumes import ContainerInfo, DataSource, VolumeInfo


def container(name: str, labels: dict[str, str], volumes=(), binds=()) -> ContainerInfo:
    return ContainerInfo(name, name, True, labels, tuple(volumes), tuple(binds))


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("tier=db", {"tier": "db"}, True),
        ("tier=db", {"tier": "web"}, False),
        ("tier", {"tier": "web"}, True),
        ("tier=", {"tier": ""}, True),
        ("tier=", {"tier": "db"}, False),
        ("tier", {}, False),
        ("a=b=c", {"a": "b=c"}, True),
    ],
)
def test_label_filter_matches(text, labels, matches):
    assert selection.LabelFilter.parse(text).matches(labels) is matches


def test_label_filter_without_key_is_a_usage_error():
    with pytest.raises(errors.UsageError):
        selection.LabelFilter.parse("=db")


def test_labels_match_needs_every_filter():
    filters = [selection.LabelFilter.parse("a=1"), selection.LabelFilter.parse("b")]
    assert selection.labels_match({"a": "1", "b": "x"}, filters)
    assert not selection.labels_match({"a": "1"}, filters)
    assert selection.labels_match({}, [])


@pytest.mark.parametrize("value", ["false", "False", " FALSE "])
def test_opts_out_reads_false_in_any_case(value):
    assert selection.opts_out({"opskit.backup": value})


@pytest.mark.parametrize("labels", [{}, {"opskit.backup": "true"}, {"opskit.backup": "no"}])
def test_opts_out_only_for_false(labels):
    assert not selection.opts_out(labels)


def test_opt_out_reason_names_the_mounting_container():
    source = DataSource("volume", "data")
    containers = [
        container("other", {"opskit.backup": "false"}, volumes=["elsewhere"]),
        container("app", {"opskit.backup": "false"}, volumes=["data"]),
    ]
    reason = selection.opt_out_reason(source, {}, containers)
    assert reason is not None and "container app" in reason


def test_opt_out_reason_for_a_bind_path_inside_a_mount():
    source = DataSource("path", "/srv/app/uploads")
    containers = [container("app", {"opskit.backup": "false"}, binds=["/srv/app"])]
    assert selection.opt_out_reason(source, {}, containers) is not None


def test_all_volumes_filters_excludes_scratch_and_marks_opt_outs():
    every = [
        VolumeInfo("a", "local", {"tier": "db"}),
        VolumeInfo("b", "local", {"tier": "web"}),
        VolumeInfo("c", "local", {"tier": "db", "opskit.backup": "false"}),
        VolumeInfo("d", "local", {"tier": "db", "io.opskit.scratch": "1"}),
    ]
    chosen = selection.all_volumes(every, [], [selection.LabelFilter.parse("tier=db")])
    assert [(item.source.name, item.skipped is not None) for item in chosen] == [
        ("a", False),
        ("c", True),
    ]
