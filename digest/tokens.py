"""Signed tokens for links in emails and pages: HMAC via itsdangerous, keyed by a secret file.

Each kind of token has its own purpose (a salt), so a token made for one link never works for another:
    unsubscribe  [profile, address]         the one-click link in every email
    manage       [profile, address]         the manage page
    feedback     [profile, paper key, mark] "more like this" / "not relevant" on an item
    confirm      [profile, address]         the double opt-in link; expires after a week
    csrf         [nonce, scope]             a form's hidden field; expires after two hours

The secret lives in the data directory (created on first use, readable by its owner only), so a
link cannot be forged or pointed at someone else's subscription. Several keys may be listed, one
per line, newest first: tokens are signed with the first and accepted with any, which lets an
operator rotate the key without breaking the links in mail already sent.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from digest.errors import DigestError, StoreError

SECRET_FILE = "secret.key"


class BadToken(DigestError):
    """A link's token was tampered with, truncated, or signed with a key no longer listed."""


def load_secrets(data_dir: Path) -> list[str]:
    """The signing keys, newest first; a new random key is written when there is none."""
    path = data_dir / SECRET_FILE
    try:
        if not path.exists():
            _create_key_file(path)
        keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except FileExistsError:  # another run created it a moment ago
        keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read or create the signing key: {exc}") from None
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise StoreError(f"{path}: holds no signing key (one random string per line)")
    return keys


def _create_key_file(path: Path) -> None:
    """Write a new key in a temporary file, then link it into place: a process that opens the
    key file never sees it empty, and of two processes creating it at once one wins (the other
    gets FileExistsError and reads the winner's key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


CONFIRM_MAX_AGE_S = 7 * 24 * 3600
CSRF_MAX_AGE_S = 2 * 3600
FEEDBACK_MARKS = ("more", "less")


def _serializer(keys: Sequence[str], purpose: str) -> URLSafeSerializer:
    return _signing(tuple(keys), purpose)[0]


@functools.lru_cache(maxsize=64)
def _signing(keys: tuple[str, ...], purpose: str) -> tuple[URLSafeSerializer, bytes]:
    """The serializer for reading, and the derived key that signs (the newest key's).

    Made once per (keys, purpose), so a rotation takes effect. itsdangerous signs with the last key
    and accepts any: newest first in the file, so reverse.
    """
    serializer = URLSafeSerializer(list(reversed(keys)), salt=f"paperdigest.{purpose}")
    return serializer, serializer.make_signer().derive_key()


@functools.lru_cache(maxsize=64)
def _keyed_mac(keys: tuple[str, ...], purpose: str) -> hmac.HMAC:
    """itsdangerous's HMAC-SHA1 with the derived key already taken in: each token copies it
    rather than hashing the key again (a third of a token's time, at 360,000 tokens a run)."""
    return hmac.new(_signing(keys, purpose)[1], digestmod=hashlib.sha1)


# json.dumps with these options builds a new encoder on every call; one does for every token.
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _to_json(value: list[Any]) -> str:
    """json.dumps(value, ensure_ascii=False, separators=(",", ":")), the same characters.

    Most tokens are a list of strings, written here with the encoder's own string quoting
    (three times faster than the encoder for three short strings); anything else goes to it.
    """
    if all(type(v) is str for v in value):
        return "[" + ",".join(map(encode_basestring, value)) + "]"
    return _json_encode(value)


def _dumps(keys: Sequence[str], purpose: str, value: list[Any]) -> str:
    """What itsdangerous's dumps makes, minus its zlib attempt (never shorter for a few words).

    A run signs some 40 links per reader, and this is several times faster; `loads` reads both
    forms, and the tests check the tokens are the same.
    """
    payload = base64_encode(_to_json(value).encode())
    mac = _keyed_mac(tuple(keys), purpose).copy()
    mac.update(payload)
    return (payload + b"." + base64_encode(mac.digest())).decode("ascii")


def short_code(keys: Sequence[str], path: str, group: str = "") -> str:
    """A 12-character code for one of our own link paths ("/feedback/TOKEN"), for BASE/l/CODE.

    Derived from the path with the newest signing key: the same path always gets the same code,
    and no one without the key can make (or guess, at 72 bits) a code for a path. The store maps
    the code back to its path (digest.store.short_link), so a code outlives a key rotation.

    With a `group` (the profile an email is for), the code's first 4 characters come from the
    group and the other 8 from the path: the 42 links of one email then sit side by side in the
    store's index, a few pages written per email instead of one page per link (issue 16).
    """
    _, derived = _signing(tuple(keys), "short")
    mac = hmac.new(derived, path.encode(), hashlib.sha256).digest()
    if not group:
        return base64_encode(mac[:9]).decode("ascii")
    prefix = hmac.new(derived, b"group\0" + group.encode(), hashlib.sha256).digest()
    return base64_encode(prefix[:3] + mac[:6]).decode("ascii")


def _strings(value: Any, count: int, what: str) -> list[str]:
    if not (
        isinstance(value, list) and len(value) == count and all(isinstance(v, str) for v in value)
    ):
        raise BadToken(f"the {what} link is not valid (unexpected contents)")
    return value


def _load(keys: Sequence[str], purpose: str, token: str, count: int, what: str) -> list[str]:
    try:
        value = _serializer(keys, purpose).loads(token)
    except BadSignature:
        raise BadToken(f"the {what} link is not valid (tampered with or cut short)") from None
    return _strings(value, count, what)


def _dumps_dated(keys: Sequence[str], purpose: str, values: list[str], now: float) -> str:
    # The signing time is part of the signed value, taken from the caller's (the app's) clock.
    return _dumps(keys, purpose, [*values, int(now)])


def _load_dated(
    keys: Sequence[str], purpose: str, token: str, count: int, what: str, max_age_s: int, now: float
) -> list[str]:
    try:
        value = _serializer(keys, purpose).loads(token)
    except BadSignature:
        raise BadToken(f"the {what} link is not valid (tampered with or cut short)") from None
    if not (isinstance(value, list) and value and isinstance(value[-1], int)):
        raise BadToken(f"the {what} link is not valid (unexpected contents)")
    if not 0 <= now - value[-1] <= max_age_s:
        raise BadToken(f"the {what} link has expired")
    return _strings(value[:-1], count, what)


def unsubscribe_token(keys: Sequence[str], profile: str, address: str) -> str:
    """A token naming one subscriber (profile, address), for the unsubscribe link."""
    return _dumps(keys, "unsubscribe", [profile, address.lower()])


def read_unsubscribe_token(keys: Sequence[str], token: str) -> tuple[str, str]:
    profile, address = _load(keys, "unsubscribe", token, 2, "unsubscribe")
    return profile, address


def manage_token(keys: Sequence[str], profile: str, address: str) -> str:
    """A token for one subscriber's manage page (edit, pause, feed URL)."""
    return _dumps(keys, "manage", [profile, address.lower()])


def read_manage_token(keys: Sequence[str], token: str) -> tuple[str, str]:
    profile, address = _load(keys, "manage", token, 2, "manage")
    return profile, address


def feedback_token(keys: Sequence[str], profile: str, key: str, mark: str) -> str:
    """A token for one mark ("more" or "less") on one paper in one profile's digest or feed."""
    return _dumps(keys, "feedback", [profile, key, mark])


def read_feedback_token(keys: Sequence[str], token: str) -> tuple[str, str, str]:
    profile, key, mark = _load(keys, "feedback", token, 3, "feedback")
    if mark not in FEEDBACK_MARKS:
        raise BadToken("the feedback link is not valid (unexpected contents)")
    return profile, key, mark


def confirm_token(keys: Sequence[str], profile: str, address: str, now: float) -> str:
    """The double opt-in link of a new subscription; valid for a week from `now` (a timestamp)."""
    return _dumps_dated(keys, "confirm", [profile, address.lower()], now)


def read_confirm_token(keys: Sequence[str], token: str, now: float) -> tuple[str, str]:
    profile, address = _load_dated(
        keys, "confirm", token, 2, "confirmation", CONFIRM_MAX_AGE_S, now
    )
    return profile, address


def csrf_token(keys: Sequence[str], nonce: str, scope: str, now: float) -> str:
    """A form's hidden field: binds the form to the browser's cookie nonce and to one scope."""
    return _dumps_dated(keys, "csrf", [nonce, scope], now)


def read_csrf_token(keys: Sequence[str], token: str, now: float) -> tuple[str, str]:
    nonce, scope = _load_dated(keys, "csrf", token, 2, "form", CSRF_MAX_AGE_S, now)
    return nonce, scope
