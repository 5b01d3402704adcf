"""The mail channel builds messages a batch ahead and keeps their short links in one transaction;
an address that unsubscribes after its message was built is still not sent to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from freezegun import freeze_time
from helpers import MONDAY, digest, outbox, text_of, write_config

from digest.channels import mail
from digest.config import load_config
from digest.render import Renderer
from digest.store import Store


def profiles(count: int) -> str:
    return "".join(
        f'\n[profiles.p{n:03}]\nemail = ["r{n:03}@example.org"]\nkeywords = ["language model"]\n'
        f'timezone = "Europe/Berlin"\n'
        for n in range(count)
    )


def test_a_block_keeps_its_short_links_in_one_transaction_before_its_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mail, "BUILD_AHEAD", 2)
    config = write_config(tmp_path, profiles=profiles(5))
    saves: list[int] = []
    real_save = Store.save_short_links

    def save(store: Store, links: dict[str, str], at: object) -> None:
        saves.append(len(links))
        real_save(store, links, at)  # type: ignore[arg-type]

    built: list[int] = []
    real_batch = mail.MailBuilder._batch

    def batch(builder: mail.MailBuilder, rows: list[object], store: Store) -> object:
        made = real_batch(builder, rows, store)  # type: ignore[arg-type]
        built.append(len(rows))
        if len(built) == 1:  # p001's message is built by now: its reader leaves before it goes
            store.unsubscribe("p001", "r001@example.org", MONDAY)
        return made

    monkeypatch.setattr(Store, "save_short_links", save)
    monkeypatch.setattr(mail.MailBuilder, "_batch", batch)
    with freeze_time(MONDAY, auto_tick_seconds=1):
        assert digest(config, "ingest").exit_code == 0
        assert digest(config, "run").exit_code == 0
    sent = outbox(tmp_path)
    assert [str(m["To"]) for m in sent] == [f"r{n:03}@example.org" for n in (0, 2, 3, 4)]
    assert built and built[0] == 2  # built two ahead
    # One transaction for the block, before any mail: five digests' feedback codes and their
    # readers' manage and unsubscribe links; the batches of mail keep nothing more.
    assert saves == [5 * 3], saves
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        for message in sent:
            codes = re.findall(r"/l/(\S+)$", text_of(message).replace("\r\n", "\n"), re.MULTILINE)
            # A digest's feedback links share its code: CODE.m1, CODE.l1, ...
            assert codes and all(store.short_link(code.partition(".")[0]) for code in codes)


def test_a_readers_links_are_signed_once_a_pass_for_its_short_links_and_its_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # begin() makes each reader's links to keep their short forms; the reader's email uses them.
    config = write_config(tmp_path, profiles=profiles(3))
    signed: list[str] = []
    real_token = mail.unsubscribe_token

    def token(keys: object, profile: str, address: str) -> str:
        signed.append(address)
        return real_token(keys, profile, address)  # type: ignore[arg-type]

    codes: list[tuple[str, str]] = []
    real_code = mail.LinkShortener._code

    def code(shortener: mail.LinkShortener, path: str, group: str) -> str:
        if (path, group) not in shortener._codes:
            codes.append((path, group))
        return real_code(shortener, path, group)

    monkeypatch.setattr(mail, "unsubscribe_token", token)
    monkeypatch.setattr(mail.LinkShortener, "_code", code)
    with freeze_time(MONDAY, auto_tick_seconds=1):
        assert digest(config, "ingest").exit_code == 0
        assert digest(config, "run").exit_code == 0
    assert len(outbox(tmp_path)) == 3
    assert sorted(signed) == [f"r{n:03}@example.org" for n in range(3)]
    assert len(codes) == len(set(codes)) == 3 * 3  # feedback, manage, unsubscribe: once each


def test_codes_made_ahead_for_mail_another_worker_sent_are_kept_later_not_lost(
    tmp_path: Path,
) -> None:
    # Two workers on one store: a batch built ahead may hold rows the other worker sends. Its
    # short codes are made, never kept; the pass then ends with nothing of its own to mail
    # (begin(None)), which must neither fail (it did: max() of no digest) nor mark them kept.
    config = write_config(tmp_path, profiles=profiles(2))
    with freeze_time(MONDAY, auto_tick_seconds=1):
        assert digest(config, "ingest").exit_code == 0
        loaded = load_config(config)
        with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
            builder = mail.MailBuilder(loaded, store, Renderer())
            short = builder.shorten(f"{loaded.output.base_url}/manage/some-token", group="p000")
            code = short.rpartition("/")[2]
            builder.begin(None)
            assert store.short_link(code) is None
            assert builder.shorten.take() == {code: "/manage/some-token"}  # still to be kept
