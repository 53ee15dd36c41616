"""Password hashing: argon2id (argon2-cffi) with its defaults; nothing else is ever stored."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


@cache
def _dummy() -> str:
    """Verified against when the account does not exist, so a wrong name costs as long as a wrong
    password. Made on first use: an argon2 hash costs 64 MiB and tens of ms, and every hub start
    and CLI command would pay it at import."""
    return _hasher.hash("gpufleet: no such account")

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; a cap keeps a megabyte "password" from costing CPU


def check_new(password: str) -> str | None:
    """Why this password is refused, or None when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"the password is shorter than {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password is longer than {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
