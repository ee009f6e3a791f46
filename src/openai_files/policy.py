"""Which files the service accepts and how it lists them, in one value object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "DAY",
    "EXPIRES_AFTER_MAX",
    "EXPIRES_AFTER_MIN",
    "OPENAI_SYSTEM_PURPOSES",
    "OPENAI_UPLOAD_PURPOSES",
    "Policy",
]

DAY = 24 * 60 * 60
EXPIRES_AFTER_MIN = 3600
EXPIRES_AFTER_MAX = 30 * DAY

OPENAI_UPLOAD_PURPOSES: tuple[str, ...] = (
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
)
OPENAI_SYSTEM_PURPOSES: tuple[str, ...] = ("assistants_output", "batch_output", "fine-tune-results")


def _frozen(mapping: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Policy:
    """The rules of one deployment. The defaults are OpenAI's.

    - ``upload_purposes``: purposes a client may upload, in the order error messages list them.
    - ``max_file_size``: the largest file ``POST /files`` accepts, in bytes, enforced while
      the body streams in.
    - ``max_filename_length``: the longest filename accepted, in characters.
    - ``default_expiry``: seconds after creation at which a file of a purpose expires when the
      client sends no ``expires_after`` (OpenAI: ``batch`` after 30 days, others never).
    - ``list_limit_default`` / ``list_limit_max``: the page size of ``GET /files``.
    """

    upload_purposes: tuple[str, ...] = OPENAI_UPLOAD_PURPOSES
    max_file_size: int = 512 * 1024 * 1024
    max_filename_length: int = 1024
    default_expiry: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"batch": EXPIRES_AFTER_MAX})
    )
    list_limit_default: int = 10_000
    list_limit_max: int = 10_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_expiry", _frozen(self.default_expiry))
        if self.max_file_size < 1:
            raise ValueError("max_file_size must be at least 1 byte")
        if not 1 <= self.list_limit_default <= self.list_limit_max:
            raise ValueError("list_limit_default must be between 1 and list_limit_max")

    def __repr__(self) -> str:
        return (
            f"Policy(upload_purposes={self.upload_purposes!r}, "
            f"max_file_size={self.max_file_size}, "
            f"default_expiry={dict(self.default_expiry)!r}, "
            f"list_limit_default={self.list_limit_default}, list_limit_max={self.list_limit_max})"
        )
