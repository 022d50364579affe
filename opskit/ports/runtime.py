"""Turning the engine's running containers into mappings, and the rules only runtime has.

Since Docker 20.10.6 a port published without a host IP shows as two bindings, 0.0.0.0 and
`::`. Such a pair becomes one mapping with `host_ip` None ("all interfaces"), as the compose
file writes it. Consecutive ports of one container become a group, like a compose range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opskit.ports.model import ALL_INTERFACES_IPV4, ALL_INTERFACES_IPV6, Mapping

if TYPE_CHECKING:
    from opskit.engine.published_ports import RunningContainer


def container_mappings(container: RunningContainer) -> list[Mapping]:
    """Return the container's published ports as mappings (source "runtime")."""
    addresses: dict[tuple[int, int, str], set[str]] = defaultdict(set)
    for binding in container.bindings:
        key = (binding.host_port, binding.container_port, binding.protocol)
        addresses[key].add(binding.host_ip)
    rows: list[tuple[str | None, int, int, str]] = []
    for (host_port, container_port, protocol), ips in addresses.items():
        if {ALL_INTERFACES_IPV4, ALL_INTERFACES_IPV6} <= ips:
            ips = ips - {ALL_INTERFACES_IPV4, ALL_INTERFACES_IPV6}
            rows.append((None, host_port, container_port, protocol))
        rows.extend((ip, host_port, container_port, protocol) for ip in ips)
    rows.sort(key=lambda row: (row[0] or "", row[3], row[1], row[2]))
    config_file = container.compose_config_files[0] if container.compose_config_files else None
    mappings = []
    for run in _consecutive_runs(rows):
        group = None
        if len(run) > 1:
            host_ip, host_port, _, protocol = run[0]
            group = f"{container.name}:{host_ip or '*'}:{host_port}/{protocol}"
        for host_ip, host_port, container_port, protocol in run:
            mappings.append(
                Mapping(
                    source="runtime",
                    file=config_file,
                    service=container.compose_service,
                    container=container.name,
                    host_ip=host_ip,
                    host_port=host_port,
                    container_port=container_port,
                    protocol=protocol,
                    project=container.compose_project,
                    group=group,
                    group_size=len(run),
                )
            )
    return mappings


def _consecutive_runs(
    rows: Sequence[tuple[str | None, int, int, str]],
) -> list[list[tuple[str | None, int, int, str]]]:
    """Split sorted rows into runs where host and container ports both go up by one."""
    runs: list[list[tuple[str | None, int, int, str]]] = []
    for row in rows:
        if runs:
            last = runs[-1][-1]
            if (
                row[0] == last[0]
                and row[3] == last[3]
                and row[1] == last[1] + 1
                and row[2] == last[2] + 1
            ):
                runs[-1].append(row)
                continue
        runs.append([row])
    return runs
