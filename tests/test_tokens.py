"""Signed link tokens: the same bytes itsdangerous makes, one purpose each, key rotation, expiry."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeSerializer

from digest.tokens import (
    BadToken,
    confirm_token,
    csrf_token,
    feedback_token,
    manage_token,
    read_confirm_token,
    read_csrf_token,
    read_feedback_token,
    read_manage_token,
    read_unsubscribe_token,
    unsubscribe_token,
)

KEYS = ["newest-key-0123456789", "older-key-9876543210"]


@pytest.mark.parametrize(
    "profile, address",
    [("ml", "a@example.org"), ("web-0123abcd", "Zoë@exämple.org"), ("Zürich-ß", "b@example.org")],
)
def test_tokens_are_what_itsdangerous_signs_with_the_newest_key(profile: str, address: str) -> None:
    reference = URLSafeSerializer(list(reversed(KEYS)), salt="paperdigest.manage")
    token = manage_token(KEYS, profile, address)
    assert token == reference.dumps([profile, address.lower()])
    assert read_manage_token(KEYS, token) == (profile, address.lower())


@pytest.mark.parametrize(
    "key",
    ["2611.01234", 'title:a "quoted" \\ back\tslash', "title:zoë ✓ 😀", "doi:10.1/x\x00\x1f\u2028", ""],
)
def test_feedback_and_dated_tokens_are_what_itsdangerous_signs(key: str) -> None:
    # The token writer quotes a list of strings itself (issue 16): the same JSON, every character.
    feedback = URLSafeSerializer(list(reversed(KEYS)), salt="paperdigest.feedback")
    token = feedback_token(KEYS, "ml", key, "more")
    assert token == feedback.dumps(["ml", key, "more"])
    assert read_feedback_token(KEYS, token) == ("ml", key, "more")
    assert feedback_token(KEYS, "ml", key, "less") != token
    assert feedback_token(KEYS, "other", key, "more") != token
    assert feedback_token(KEYS[1:], "ml", key, "more") != token  # signed with the newest key
    confirm = URLSafeSerializer(list(reversed(KEYS)), salt="paperdigest.confirm")
    assert confirm_token(KEYS, key, "a@example.org", now=1_000) == confirm.dumps([key, "a@example.org", 1_000])


def test_a_compressible_value_is_signed_plain_and_itsdangerous_still_reads_it() -> None:
    reference = URLSafeSerializer(list(reversed(KEYS)), salt="paperdigest.manage")
    token = manage_token(KEYS, "x" * 300, "b@example.org")
    assert not token.startswith(".")  # itsdangerous would have compressed it
    assert reference.loads(token) == ["x" * 300, "b@example.org"]


def test_a_token_works_only_for_its_own_purpose() -> None:
    token = unsubscribe_token(KEYS, "ml", "a@example.org")
    assert read_unsubscribe_token(KEYS, token) == ("ml", "a@example.org")
    with pytest.raises(BadToken):
        read_manage_token(KEYS, token)
    with pytest.raises(BadToken):
        read_feedback_token(KEYS, feedback_token(KEYS, "ml", "2401.01234", "maybe"))


def test_rotation_accepts_old_keys_until_they_are_removed() -> None:
    old = feedback_token(KEYS[1:], "ml", "2401.01234", "less")
    assert read_feedback_token(KEYS, old) == ("ml", "2401.01234", "less")
    with pytest.raises(BadToken):
        read_feedback_token(KEYS[:1], old)


def test_dated_tokens_expire_by_the_callers_clock() -> None:
    confirm = confirm_token(KEYS, "web-1", "a@example.org", now=1_000_000)
    assert read_confirm_token(KEYS, confirm, now=1_000_000 + 6 * 86400) == ("web-1", "a@example.org")
    with pytest.raises(BadToken, match="expired"):
        read_confirm_token(KEYS, confirm, now=1_000_000 + 8 * 86400)
    with pytest.raises(BadToken, match="expired"):  # from the future: not trusted either
        read_confirm_token(KEYS, confirm, now=1_000_000 - 60)
    form = csrf_token(KEYS, "nonce", "subscribe", now=50_000)
    assert read_csrf_token(KEYS, form, now=50_000 + 3600) == ("nonce", "subscribe")
    with pytest.raises(BadToken):
        read_csrf_token(KEYS, form, now=50_000 + 3 * 3600)


def test_a_changed_or_cut_token_is_refused() -> None:
    token = manage_token(KEYS, "ml", "a@example.org")
    for bad in (token[:-1], token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], "x" + token, ""):
        with pytest.raises(BadToken):
            read_manage_token(KEYS, bad)


def test_one_emails_short_codes_share_a_prefix_so_they_sit_together_in_the_store() -> None:
    from digest.tokens import short_code

    paths = [f"/feedback/token-{n}" for n in range(40)]
    alice = [short_code(KEYS, path, "alice") for path in paths]
    bob = [short_code(KEYS, path, "bob") for path in paths]
    assert all(len(code) == 12 for code in alice + bob)
    assert len({code[:4] for code in alice}) == 1 and len({code[:4] for code in bob}) == 1
    assert alice[0][:4] != bob[0][:4]
    assert len(set(alice)) == 40, "each path its own code"
    assert alice == [short_code(KEYS, path, "alice") for path in paths], "stable"
    assert short_code(KEYS, paths[0]) != alice[0]  # without a group: the whole code from the path
    assert short_code(KEYS[1:], paths[0], "alice") != alice[0], "made with the key"
