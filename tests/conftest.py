"""Shared fixtures. Integration fixtures fail (never skip) when the engine or S3 server is missing:
run `make test`, which sets them up first."""

from __future__ import annotations

import uuid

import docker
import pytest

pytest_plugins = ["tests.s3_fixtures"]


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    """The real engine. Fails with a reason when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(
            f"no Docker engine answers ({exc}); run `make test` or scripts/setup-engine.sh first",
            pytrace=False,
        )
    return client


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses, for volumes, containers, buckets and prefixes."""
    return f"opskit-test-{uuid.uuid4().hex[:10]}"


class Resources:
    """Records volumes and containers a test creates and removes them all in teardown."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.volumes: list[str] = []
        self.containers: list[str] = []

    def volume(self, name: str | None = None, **kwargs) -> str:
        name = name or f"opskit-test-{uuid.uuid4().hex[:10]}"
        self.client.volumes.create(name, **kwargs)
        self.volumes.append(name)
        return name

    def track_volume(self, name: str) -> str:
        """Remember a volume created by the code under test, so teardown removes it."""
        self.volumes.append(name)
        return name

    def container(self, image: str = "busybox:stable", command="sleep 600", **kwargs):
        kwargs.setdefault("name", f"opskit-test-{uuid.uuid4().hex[:10]}")
        container = self.client.containers.run(image, command, detach=True, **kwargs)
        self.containers.append(container.id)
        return container

    def cleanup(self) -> None:
        for container_id in self.containers:
            try:
                self.client.containers.get(container_id).remove(force=True)
            except docker.errors.NotFound:
                pass
        for name in self.volumes:
            try:
                self.client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture
def resources(docker_client: docker.DockerClient):
    tracker = Resources(docker_client)
    yield tracker
    tracker.cleanup()
