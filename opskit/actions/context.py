"""The run context: what every action of one run shares, opened once.

The CLI makes one per command, the daemon one per job run; migrate will take two engines from
one. It holds the config, the event sink, and the engines and stores the run opened (by
address and by location), and closes them all at the end.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from opskit import events
from opskit.archive import age
from opskit.config.encryption import Encryption
from opskit.config.schema import Config
from opskit.storage.base import Storage
from opskit.storage.registry import open_storage

if TYPE_CHECKING:  # docker loads when a run first needs an engine, not for `list`
    from opskit.engine import client


class RunContext:
    """Config, event sink, and the engines and stores of one run; a context manager."""

    def __init__(
        self,
        config: Config | None = None,
        emit: events.EventSink = events.discard,
        identity_file: Path | None = None,
    ):
        self.config = config if config is not None else Config()
        self.emit = emit
        # --identity, else $OPSKIT_AGE_IDENTITY_FILE; read only when an archive is encrypted.
        self.identity_file = age.identity_file_from(identity_file)
        self._identities: list[object] | None = None
        self._engines: dict[str | None, client.Engine] = {}
        self._stores: dict[tuple[str, str | None], Storage] = {}

    def identities(self, location: str | None = None) -> list[object]:
        """The age identities of the run: from --identity or $OPSKIT_AGE_IDENTITY_FILE, else
        the `identity_file` of `location`'s target encryption; [] if none is set."""
        if self._identities is None:
            path = self.identity_file
            if path is None and location is not None:
                encryption = self.config.resolve_target(location).encryption
                if encryption is not None and encryption.identity_file:
                    path = Path(encryption.identity_file)
            self._identities = age.read_identities(path) if path is not None else []
        return self._identities

    def recipients(self, location: str, given: Encryption | None = None) -> list[age.Recipient]:
        """Who backups to `location` are encrypted to: the recipients `given` (--encrypt-to,
        --encrypt-to-file, or a job's encryption) if any, else the target's; [] for none.
        Raise `UsageError` for a recipient that is not a public key."""
        setting = given if given is not None and given.is_set() else None
        setting = setting or self.config.resolve_target(location).encryption
        if setting is None:
            return []
        recipients = [age.parse_recipient(text) for text in setting.recipients]
        if setting.recipients_file:
            recipients += age.read_recipients_file(Path(setting.recipients_file))
        return age.unique_recipients(recipients)

    def engine(self, docker_host: str | None = None) -> client.Engine:
        """Return the engine at `docker_host` (None: the environment's), connecting once."""
        if docker_host not in self._engines:
            from opskit.engine import client

            self._engines[docker_host] = client.connect(docker_host)
        return self._engines[docker_host]

    def store(self, location: str, host: str | None = None) -> Storage:
        """Return the store at `location` (a path, a URL or a target name), opening it once:
        for a target with host prefixes, this machine's part of it, or `host`'s if given.
        Raise `UsageError` as `open_storage` does."""
        key = (location, host)
        if key not in self._stores:
            self._stores[key] = open_storage(location, self.config, host)
        return self._stores[key]

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
