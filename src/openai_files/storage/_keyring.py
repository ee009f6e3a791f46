"""Master keys for `EncryptedStorage`: a `Keyring` of `MasterKey`s, read from a key file.

A key file holds one ``KEY_ID:BASE64`` per line, where the base64 decodes to exactly 32
bytes (an AES-256 key); blank lines and lines starting with ``#`` are skipped. The first key
writes; every key reads. Messages never show a key's bytes, only its id and line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["KEY_BYTES", "Keyring", "MasterKey"]

KEY_BYTES = 32
"""The length of a master key: AES-256."""
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class MasterKey:
    """A master key and the id recorded beside every data key it wraps. Its ``repr`` never
    shows the key's bytes."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.key_id):
            raise ValueError(
                f"invalid master key id {self.key_id[:64]!r}: 1 to 64 letters, digits, "
                "'_', '.' or '-', starting with a letter or digit"
            )
        if len(self.secret) != KEY_BYTES:
            raise ValueError(
                f"master key {self.key_id!r} is {len(self.secret)} bytes; it must be "
                f"{KEY_BYTES} (AES-256)"
            )


class Keyring:
    """Master keys by id: the first one (`current`) wraps the data keys of new objects, and
    every one unwraps those of objects written under it.

    Rotate by putting a new key first, keeping the old ones after it until every object has
    been re-wrapped under the new key (`EncryptedStorage.rewrap`); then remove them.
    """

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        self._keys: dict[str, MasterKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ValueError(f"master key id {key.key_id!r} is given twice")
            self._keys[key.key_id] = key
        if not self._keys:
            raise ValueError("a keyring needs at least one master key")
        self.current = next(iter(self._keys.values()))

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys, the writing one first."""
        return list(self._keys)

    def get(self, key_id: str) -> MasterKey | None:
        """The key with this id, or None when the keyring does not hold it."""
        return self._keys.get(key_id)

    @classmethod
    def from_text(cls, text: str, *, source: str = "the key file") -> Keyring:
        """The keys of a key file's text (see the module); `ValueError` naming the line at
        fault, never its key."""
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source} line {number}"
            key_id, separator, encoded = line.partition(":")
            if not separator:
                raise ValueError(f"{where}: write KEY_ID:BASE64_32_BYTES")
            try:
                secret = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{where}: the key after ':' is not valid base64") from None
            try:
                keys.append(MasterKey(key_id.strip(), secret))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if not keys:
            raise ValueError(f"{source} holds no key: write KEY_ID:BASE64_32_BYTES lines")
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> Keyring:
        """The keys of the key file at ``path``; `ValueError` saying what is wrong."""
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ValueError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the key file {path} is not UTF-8 text") from None
        return cls.from_text(text, source=str(path))
