"""Which sources a compose project's snapshot takes."""

from __future__ import annotations

from opskit.actions.snapshot import CONFIG_FILES_LABEL, project_sources
from opskit.engine.volumes import ContainerInfo, VolumeInfo


def test_project_sources_unites_labelled_and_mounted_volumes_and_skips_opt_outs():
    containers = [
        ContainerInfo(
            "1",
            "shop-web-1",
            True,
            {CONFIG_FILES_LABEL: "/a.yaml,/b.yaml"},
            ("shop_web", "shared"),
            ("/srv/shop",),
        ),  # fmt: skip
        ContainerInfo("2", "shop-db-1", True, {CONFIG_FILES_LABEL: "/a.yaml"}, ("shop_db",)),
    ]
    labelled = [VolumeInfo("shop_db", "local"), VolumeInfo("shop_cache", "local")]
    info = {
        "shop_cache": VolumeInfo("shop_cache", "local", {"opskit.backup": "false"}),
        "shop_db": labelled[0],
    }

    found = project_sources(containers, labelled, info, include_binds=False)

    assert [m.source.name for m in found.members] == ["shared", "shop_db", "shop_web"]
    assert [source.name for source, _ in found.skipped] == ["shop_cache"]
    assert found.compose_files == ["/a.yaml", "/b.yaml"]


def test_project_sources_takes_binds_only_when_asked():
    containers = [ContainerInfo("1", "web", True, {}, (), ("/srv/shop",))]
    assert project_sources(containers, [], {}, include_binds=False).members == []
    members = project_sources(containers, [], {}, include_binds=True).members
    assert [(m.source.kind, m.source.name) for m in members] == [("path", "/srv/shop")]
