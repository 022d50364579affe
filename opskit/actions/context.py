"""The run context: what every action of one run shares, opened once.

The CLI makes one per command, the daemon one per job run; migrate will take two engines from
one. It holds the config, the event sink, and the engines and stores the run opened (by
address and by location), and closes them all at the end.
"""

from __future__ import annotations

from types import TracebackType

from opskit import events
from opskit.config.schema import Config
from opskit.engine import client
from opskit.storage.base import Storage
from opskit.storage.registry import open_storage


class RunContext:
    """Config, event sink, and the engines and stores of one run; a context manager."""

    def __init__(self, config: Config | None = None, emit: events.EventSink = events.discard):
        self.config = config if config is not None else Config()
        self.emit = emit
        self._engines: dict[str | None, client.Engine] = {}
        self._stores: dict[str, Storage] = {}

    def engine(self, docker_host: str | None = None) -> client.Engine:
        """Return the engine at `docker_host` (None: the environment's), connecting once."""
        if docker_host not in self._engines:
            self._engines[docker_host] = client.connect(docker_host)
        return self._engines[docker_host]

    def store(self, location: str) -> Storage:
        """Return the store at `location` (a path, a URL or a target name), opening it once."""
        if location not in self._stores:
            self._stores[location] = open_storage(location, self.config)
        return self._stores[location]

    def helper_image(self, given: str | None = None) -> str:
        return given or self.config.helper_image

    def close(self) -> None:
        """Close every engine and store the run opened; the first error wins, after all."""
        opened: list[client.Engine | Storage] = [*self._engines.values(), *self._stores.values()]
        self._engines.clear()
        self._stores.clear()
        first: BaseException | None = None
        for resource in opened:
            try:
                resource.close()
            except Exception as exc:  # noqa: BLE001 - close the rest first
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> RunContext:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the run's own error matters more
                pass
