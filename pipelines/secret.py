"""``Secret``: a string (a token, a password) that never shows itself.

``repr``, ``str`` and f-strings print a mask and pickling is refused, so a secret held in
settings cannot leak through a log line, an exception message or a cache.
"""

from __future__ import annotations

import hashlib

MASK = "**********"


class Secret:
    """A string whose every rendering is ``MASK``; ``get_secret_value()`` reads it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def digest(self) -> bytes:
        """SHA-256 of the value: compare digests, so neither length nor prefix leaks."""
        return hashlib.sha256(self._value.encode("utf-8", "surrogatepass")).digest()

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
