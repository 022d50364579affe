"""Loading compose projects: merged -f files, .env files, interpolation, findings while reading."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from opskit import errors
from opskit.ports import compose


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def published(project: compose.ComposeProject, service: str) -> list[tuple]:
    return [
        (m.host_ip, m.host_port, m.container_port, m.protocol)
        for m in project.mappings()
        if m.service == service
    ]


def test_load_project_reads_short_long_and_int_ports(tmp_path: Path):
    path = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            image: nginx
            ports:
              - 22:22
              - "127.0.0.1:8080:80"
              - 9000
              - target: 443
                published: "8443"
                host_ip: "::1"
                protocol: tcp
              - "8000-8010:81/udp"
        """,
    )
    project = compose.load_project([path], process_environment={})
    assert published(project, "web") == [
        (None, 22, 22, "tcp"),
        ("127.0.0.1", 8080, 80, "tcp"),
        (None, None, 9000, "tcp"),
        ("::1", 8443, 443, "tcp"),
        (None, "8000-8010", 81, "udp"),
    ]
    lines = [m.location.line for m in project.mappings()]
    assert lines == [5, 6, 7, 8, 12]
    assert project.findings == []


def test_load_project_merges_files_like_docker_compose(tmp_path: Path):
    base = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            ports: ["80:80", "443:443"]
            expose: ["3000"]
          db:
            ports: ["5432:5432"]
        """,
    )
    override = write(
        tmp_path,
        "compose.override.yaml",
        """\
        services:
          web:
            ports:
              - target: 80
                published: 80
                host_ip: 0.0.0.0
              - "8080:8080"
            expose: [3000, "3001"]
            network_mode: bridge
          cache:
            ports: ["127.0.0.1:6379:6379"]
        """,
    )
    project = compose.load_project([base, override], process_environment={})
    # "80:80" and the long entry share compose's merge key: the later one replaces it in place.
    assert published(project, "web") == [
        ("0.0.0.0", 80, 80, "tcp"),
        (None, 443, 443, "tcp"),
        (None, 8080, 8080, "tcp"),
    ]
    web_lines = [
        (m.location.file, m.location.line) for m in project.mappings() if m.service == "web"
    ]
    assert web_lines == [(str(override), 4), (str(base), 3), (str(override), 7)]
    assert [(port, protocol) for port, protocol, _ in project.services["web"].expose] == [
        (3000, "tcp"),
        (3001, "tcp"),
    ]
    assert project.services["web"].network_mode == "bridge"
    assert sorted(project.services) == ["cache", "db", "web"]


def test_load_project_drops_duplicate_entries_within_one_file(tmp_path: Path):
    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    ports: ['80:80', '80:80']\n")
    project = compose.load_project([path], process_environment={})
    assert published(project, "web") == [(None, 80, 80, "tcp")]


def test_load_project_reset_and_override_tags(tmp_path: Path):
    base = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            ports: ["80:80"]
            network_mode: host
          api:
            ports: ["8080:80"]
          old:
            ports: ["9000:9000"]
        """,
    )
    override = write(
        tmp_path,
        "override.yaml",
        """\
        services:
          web:
            ports: !override ["127.0.0.1:80:80"]
            network_mode: !reset null
          api:
            ports: !reset []
          old: !reset
        """,
    )
    project = compose.load_project([base, override], process_environment={})
    assert published(project, "web") == [("127.0.0.1", 80, 80, "tcp")]
    assert project.services["web"].network_mode is None
    assert published(project, "api") == []
    assert "old" not in project.services


def test_load_project_interpolates_from_dotenv_and_process_environment(tmp_path: Path):
    write(tmp_path, ".env", "BIND=127.0.0.1\nWEB_PORT=8080\nDB_PORT=5432\n")
    path = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            ports:
              - "${BIND}:${WEB_PORT:-80}:80"
              - "$DB_PORT:5432"
              - target: 443
                published: ${TLS_PORT-8443}
        """,
    )
    project = compose.load_project([path], process_environment={"DB_PORT": "15432"})
    assert published(project, "web") == [
        ("127.0.0.1", 8080, 80, "tcp"),
        (None, 15432, 5432, "tcp"),
        (None, 8443, 443, "tcp"),
    ]


def test_load_project_explicit_env_files_replace_the_default(tmp_path: Path):
    write(tmp_path, ".env", "PORT=1111\n")
    first = write(tmp_path, "first.env", "PORT=2222\nIP=127.0.0.1\n")
    second = write(tmp_path, "second.env", "PORT=3333\n")
    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    ports: ['${IP}:${PORT}:80']\n")
    project = compose.load_project([path], env_files=[first, second], process_environment={})
    assert published(project, "web") == [("127.0.0.1", 3333, 80, "tcp")]


def test_load_project_dotenv_comes_from_the_project_dir(tmp_path: Path):
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    write(project_dir, ".env", "PORT=7000\n")
    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    ports: ['${PORT}:80']\n")
    project = compose.load_project([path], project_dir=project_dir, process_environment={})
    assert published(project, "web") == [(None, 7000, 80, "tcp")]
    assert project.name == "project"


def test_missing_explicit_env_file_is_config_error(tmp_path: Path):
    path = write(tmp_path, "compose.yaml", "services: {}\n")
    with pytest.raises(errors.ConfigError, match="cannot read env file"):
        compose.load_project([path], env_files=[tmp_path / "nope.env"], process_environment={})


def test_unset_variable_reads_empty_and_becomes_a_finding(tmp_path: Path):
    path = write(
        tmp_path, "compose.yaml", "services:\n  db:\n    ports: ['${DB_BIND}:5432:5432']\n"
    )
    project = compose.load_project([path], process_environment={})
    assert published(project, "db") == [(None, 5432, 5432, "tcp")]
    [finding] = project.findings
    assert (finding.rule, finding.severity, finding.service) == ("unset-variable", "info", "db")
    assert "DB_BIND" in finding.message
    assert (finding.file, finding.location.line) == (str(path), 3)


def test_variables_outside_port_fields_are_not_needed(tmp_path: Path):
    path = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          db:
            environment:
              PASSWORD: ${DB_PASSWORD:?set it}
            ports: ["127.0.0.1:5432:5432"]
        """,
    )
    project = compose.load_project([path], process_environment={})
    assert published(project, "db") == [("127.0.0.1", 5432, 5432, "tcp")]
    assert project.findings == []


def test_invalid_port_entries_become_findings_naming_file_and_service(tmp_path: Path):
    path = write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            ports:
              - "80:80"
              - "localhost:8080:80"
              - "8000-8002:80-81"
              - target: 80
                published: 80
                protocol: icmp
              - "${REQUIRED:?must be set}:80"
              - 1.5
            expose: ["web"]
          broken:
            ports: "80:80"
        """,
    )
    project = compose.load_project([path], process_environment={})
    assert published(project, "web") == [(None, 80, 80, "tcp")]
    invalid = [f for f in project.findings if f.rule == "invalid-port-spec"]
    assert [(f.service, f.location.line) for f in invalid] == [
        ("web", 5),
        ("web", 6),
        ("web", 7),
        ("web", 10),
        ("web", 11),
        ("web", 12),
        ("broken", 14),
    ]
    assert all(f.file == str(path) and f.severity == "high" for f in invalid)
    assert "must be set" in invalid[3].message


def test_host_network_services_publish_nothing(tmp_path: Path):
    path = write(
        tmp_path,
        "compose.yaml",
        "services:\n  agent:\n    network_mode: host\n    ports: ['9100:9100']\n",
    )
    project = compose.load_project([path], process_environment={})
    assert project.mappings() == []
    assert project.services["agent"].uses_host_network
    assert project.services["agent"].network_mode_location.line == 3


def test_extends_and_include_are_reported_as_incomplete(tmp_path: Path):
    path = write(
        tmp_path,
        "compose.yaml",
        """\
        include:
          - other.yaml
        services:
          web:
            extends:
              file: base.yaml
              service: web
        """,
    )
    project = compose.load_project([path], process_environment={})
    assert [(f.rule, f.location.line) for f in project.findings] == [
        ("incomplete-audit", 1),
        ("incomplete-audit", 5),
    ]


@pytest.mark.parametrize(
    ("environment", "declared", "expected"),
    [
        ({}, "", "myproject"),
        ({}, "name: Declared_Name\n", "declared_name"),
        ({"COMPOSE_PROJECT_NAME": "From.Env"}, "name: declared\n", "fromenv"),
    ],
)
def test_project_name_precedence(tmp_path: Path, environment, declared, expected):
    directory = tmp_path / "MyProject"
    directory.mkdir()
    path = write(directory, "compose.yaml", f"{declared}services: {{}}\n")
    assert compose.load_project([path], process_environment=environment).name == expected


def test_explicit_project_name_wins(tmp_path: Path):
    path = write(tmp_path, "compose.yaml", "name: declared\nservices: {}\n")
    project = compose.load_project([path], project_name="cli", process_environment={})
    assert project.name == "cli"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [web]\n", "`services` must be a mapping"),
        ("- a\n", "expected a mapping at the top level"),
        ("services:\n  web: nginx\n", "line 2: service web must be a mapping"),
        ("services:\n  web:\n    ports: [80\n", "line 4"),
        ("name: ${X:?need a name}\nservices: {}\n", "line 1: required variable X"),
    ],
)
def test_malformed_compose_files_are_config_errors(tmp_path: Path, text: str, message: str):
    path = write(tmp_path, "compose.yaml", text)
    with pytest.raises(errors.ConfigError, match=message):
        compose.load_project([path], process_environment={})


def test_unreadable_compose_file_is_config_error(tmp_path: Path):
    with pytest.raises(errors.ConfigError, match="cannot read compose file"):
        compose.load_project([tmp_path / "missing.yaml"], process_environment={})


def test_empty_file_and_null_service_are_fine(tmp_path: Path):
    empty = write(tmp_path, "empty.yaml", "")
    nulls = write(tmp_path, "nulls.yaml", "services:\n  web:\n")
    project = compose.load_project([empty, nulls], process_environment={})
    assert list(project.services) == ["web"]
    assert project.mappings() == []


def test_range_mappings_share_a_group(tmp_path: Path):
    path = write(
        tmp_path, "compose.yaml", "services:\n  web:\n    ports: ['9000-9002:9000-9002']\n"
    )
    mappings = compose.load_project([path], process_environment={}).mappings()
    assert len({m.group for m in mappings}) == 1
    assert {m.group_size for m in mappings} == {3}


@pytest.mark.parametrize(
    ("name", "normalized"), [("My App", "myapp"), ("_x-Y.z", "x-yz"), ("ok_1", "ok_1")]
)
def test_normalize_project_name(name: str, normalized: str):
    assert compose.normalize_project_name(name) == normalized


def test_load_project_refuses_a_compose_file_larger_than_the_bound(tmp_path: Path):
    path = tmp_path / "compose.yaml"
    path.write_bytes(b"#" * (compose.MAX_COMPOSE_FILE_BYTES + 1))

    with pytest.raises(errors.ConfigError, match="larger than 2 MiB"):
        compose.load_project([path], process_environment={})
