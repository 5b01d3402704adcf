"""Signed tokens for links in emails (unsubscribe): HMAC via itsdangerous, keyed by a secret file.

The secret lives in the data directory (created on first use, readable by its owner only), so a
link cannot be forged or pointed at someone else's subscription. Several keys may be listed, one
per line, newest first: tokens are signed with the first and accepted with any, which lets an
operator rotate the key without breaking the links in mail already sent.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from digest.errors import DigestError, StoreError

SECRET_FILE = "secret.key"


class BadToken(DigestError):
    """A link's token was tampered with, truncated, or signed with a key no longer listed."""


def load_secrets(data_dir: Path) -> list[str]:
    """The signing keys, newest first; a new random key is written when there is none."""
    path = data_dir / SECRET_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
        keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except FileExistsError:  # another run created it a moment ago
        keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read or create the signing key: {exc}") from None
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise StoreError(f"{path}: holds no signing key (one random string per line)")
    return keys


def _serializer(keys: list[str], purpose: str) -> URLSafeSerializer:
    # itsdangerous signs with the last key and accepts any: newest first in the file, so reverse.
    return URLSafeSerializer(list(reversed(keys)), salt=f"paperdigest.{purpose}")


def unsubscribe_token(keys: list[str], profile: str, address: str) -> str:
    """A token naming one subscriber (profile, address), for the unsubscribe link."""
    return str(_serializer(keys, "unsubscribe").dumps([profile, address.lower()]))


def read_unsubscribe_token(keys: list[str], token: str) -> tuple[str, str]:
    try:
        value = _serializer(keys, "unsubscribe").loads(token)
    except BadSignature:
        raise BadToken("the unsubscribe link is not valid (tampered with or cut short)") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise BadToken("the unsubscribe link is not valid (unexpected contents)")
    return value[0], value[1]
