"""Console sign-in: who may use the console (Import, Label, Retrain, Report, Models) and the check the
web server runs on each sign-in.

Users come from a JSON file of scrypt-hashed passwords written by `assistant users add` (ASSISTANT_USERS_FILE,
default $ASSISTANT_HOME/users.json) and, for quick setups, from ASSISTANT_CONSOLE_USERS ("name:password"
pairs, hashed when read so the plain text is not kept around). No users at all means no sign-in is possible,
and the web server then keeps the console on the loopback interface.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path
from typing import Callable

from assistant.errors import ConfigError, InputError

# scrypt's cost: 2^14 x 8 x 1 is the interactive-login setting (about 16 MB and 50 ms per check).
N, R, P = 2**14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def users_path(settings) -> Path:
    return Path(settings.users_file).expanduser() if settings.users_file else settings.home / "users.json"


def read_users_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"users file {path} cannot be read: {exc}") from None
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise ConfigError(f'users file {path} should hold {{"name": "scrypt$..."}}; write it with `assistant users add`')
    return users


def _write_users_file(path: Path, users: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # owner-only from the start, then swapped in whole: never a half-written or world-readable file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(users, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def add_user(path: Path, name: str, password: str) -> bool:
    """Add a user or change their password; True when the user is new."""
    if not NAME.match(name or ""):
        raise InputError(f"user name {name!r}: use 1-64 letters, digits or . _ @ -")
    if len(password or "") < MIN_PASSWORD:
        raise InputError(f"password for {name}: at least {MIN_PASSWORD} characters")
    users = read_users_file(path)
    new = name not in users
    users[name] = hash_password(password)
    _write_users_file(path, users)
    return new


def remove_user(path: Path, name: str) -> None:
    users = read_users_file(path)
    if name not in users:
        raise InputError(f"no console user named {name!r} in {path}")
    del users[name]
    _write_users_file(path, users)


def load_users(settings) -> dict[str, str]:
    """Every console user with a password hash: the users file, then ASSISTANT_CONSOLE_USERS on top."""
    users = read_users_file(users_path(settings))
    for n, pair in enumerate(p.strip() for p in settings.console_users.split(",") if p.strip()):
        name, sep, password = pair.partition(":")
        if not sep or not NAME.match(name) or not password:
            raise ConfigError(f'ASSISTANT_CONSOLE_USERS entry {n + 1}: expected "name:password"')
        users[name] = hash_password(password)
    return users


def authenticator(users: dict[str, str]) -> Callable[[str, str], bool] | None:
    """The check for the web server's sign-in, or None when nobody can sign in."""
    if not users:
        return None

    def check(name: str, password: str) -> bool:
        stored = users.get(name)
        if stored is None:
            verify_password(password, hash_password("x" * MIN_PASSWORD))  # the same time for unknown names
            return False
        return verify_password(password, stored)

    return check
