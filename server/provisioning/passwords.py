"""Mosquitto 2.0's password file: one `user:$7$iterations$salt$hash` line per account.

`$7$` is PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte digest, both in
standard base64; Mosquitto 2.0.11's own `mosquitto_passwd` uses 101 iterations.
We write the file ourselves rather than run `mosquitto_passwd -b`, which would put
the password on a command line any local user can read in /proc. Our passwords
are 256 random bits, so the iteration count adds nothing against guessing, and a
larger one would only slow every CONNECT.
"""

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from server.errors import ProvisioningError

ITERATIONS: Final = 101
SALT_BYTES: Final = 12
_DIGEST_BYTES: Final = 64


def generate_password() -> str:
    """A new random password: 256 bits, URL-safe characters only."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The `$7$…` hash Mosquitto 2.0 stores for `password`."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _DIGEST_BYTES)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${iterations}${encoded_salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a `$7$` hash from a Mosquitto password file."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(expected))
    return hmac.compare_digest(digest, expected)


class PasswordFile:
    """A Mosquitto password file, changed under a lock and replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, str]:
        """Username → hash, in file order; an absent file has none."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ProvisioningError(f"cannot read password file {self.path}: {exc}") from exc
        entries: dict[str, str] = {}
        for line in text.splitlines():
            user, sep, hashed = line.partition(":")
            if sep and user and not line.startswith("#"):
                entries[user] = hashed
        return entries

    def __contains__(self, username: object) -> bool:
        return username in self.entries()

    def set(self, username: str, password: str) -> None:
        """Add the account or replace its password."""
        if ":" in username or "\n" in username or not username:
            raise ProvisioningError(f"invalid broker username {username!r}")
        with self._locked():
            entries = self.entries()
            entries[username] = hash_password(password)
            self._write(entries)

    def remove(self, username: str) -> bool:
        """Remove the account; return whether it was there."""
        with self._locked():
            entries = self.entries()
            if entries.pop(username, None) is None:
                return False
            self._write(entries)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A lock file beside it: the password file itself is replaced, so cannot carry the lock.
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
        except OSError as exc:
            raise ProvisioningError(f"cannot update password file {self.path}: {exc}") from exc

    def _write(self, entries: dict[str, str]) -> None:
        text = "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())
        try:
            existing = self.path.stat()
        except FileNotFoundError:
            existing = None
        fd, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            # Keep the owner and mode Mosquitto was given read access with (root:mosquitto 0640).
            if existing is not None:
                temp.chmod(existing.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.chown(temp, existing.st_uid, existing.st_gid)
            else:
                temp.chmod(0o640)
            temp.replace(self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
