"""Replicas of `openai-files serve` sharing one S3 bucket and one PostgreSQL table prefix, for
the tests that run several (the `cluster` fixture in conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .databases import POSTGRES_URL
from .support import ServerProcess

KEY = "sk-replicas"


@dataclass
class Cluster:
    """What every replica is started with: one bucket, one table prefix."""

    workdir: Path
    storage_url: str
    table_prefix: str
    env: dict[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        return [
            "--storage",
            self.storage_url,
            "--metadata",
            POSTGRES_URL,
            "--table-prefix",
            self.table_prefix,
            "--api-key",
            f"{KEY}=tenant",
            "--log-level",
            "warning",
        ]

    def replica(self) -> ServerProcess:
        server = ServerProcess(self.workdir, *self.args(), env=self.env)
        server.wait_until_serving()
        return server

    @contextmanager
    def two_replicas(self, *flags: str) -> Iterator[tuple[str, str]]:
        """The URLs of two replicas started side by side with ``flags`` added, stopped after."""
        servers = [
            ServerProcess(self.workdir, *self.args(), *flags, env=self.env) for _ in range(2)
        ]
        try:
            for server in servers:
                server.wait_until_serving()
            yield servers[0].url, servers[1].url
        finally:
            for server in servers:
                server.stop()
