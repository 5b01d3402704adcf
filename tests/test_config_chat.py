"""[chat.NAME] (team chats) and a profile's `chat = [...]` (issue 15).

A chat's credential (a webhook URL, a Matrix access token) is named by the config and read only
when sending (chat_secret): every mistake is one line naming the place, and never shows the secret.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digest.config import CHAT_KINDS, ChatConfig, DeliveryConfig, chat_secret, load_config
from digest.errors import ConfigError
from tests.helpers import digest, write_config

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = """
[fetch]
contact = "me@example.org"
[sources.arxiv-lg]
kind = "arxiv-rss"
url = "https://rss.arxiv.org/atom/cs.LG"
"""
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
TOKEN = "syt_c2VjcmV0_secrettoken_0000"
SLACK = '[chat.lab]\nkind = "slack"\nurl_env = "LAB_HOOK"\n'
MATRIX = (
    '[chat.room]\nkind = "matrix"\nhomeserver = "https://matrix.example.org"\n'
    'room = "!abc:example.org"\ntoken_env = "ROOM_TOKEN"\n'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> str:
    """The one-line message for MINIMAL + text, without its leading 'FILE: '."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "config.toml") + ": ")
    assert "\n" not in message
    return message.split(": ", 1)[1]


def secret_error(chat: ChatConfig, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        chat_secret(chat, environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- valid chats, one of each kind ----------------------------------------------------------------


def test_a_chat_of_each_kind_loads(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    config = load_config(
        write(
            tmp_path,
            SLACK
            + MATRIX
            + '[chat.ops]\nkind = "discord"\nurl_file = "secrets/discord"\nmax_items = 10\n'
            + f'[chat.any]\nkind = "webhook"\nurl = "{HOOK}"\n',
        )
    )
    assert [(c.name, c.kind) for c in config.chats] == [
        ("lab", "slack"),
        ("room", "matrix"),
        ("ops", "discord"),
        ("any", "webhook"),
    ]
    lab, room, ops, inline = config.chats
    assert (lab.url_env, lab.url_file, lab.url, lab.max_items) == ("LAB_HOOK", None, None, 25)
    assert lab.secret_key == "url_env"
    assert room.homeserver == "https://matrix.example.org"
    assert (room.room, room.token_env, room.token_file) == ("!abc:example.org", "ROOM_TOKEN", None)
    assert ops.url_file == tmp_path / "secrets" / "discord"  # relative to the config's folder
    assert ops.max_items == 10
    assert inline.url == HOOK and inline.secret_key == "url"
    assert config.chat("room") is room
    with pytest.raises(ConfigError, match=r"no \[chat.nope\] table \(chats: lab, room, ops, any\)"):
        config.chat("nope")
    assert CHAT_KINDS == ("slack", "discord", "matrix", "webhook")


def test_no_chat_tables_mean_no_chats(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[profiles.me]\nkeywords = ["x"]\n'))
    assert config.chats == ()
    assert config.profiles[0].chats == ()


def test_the_homeserver_loses_its_trailing_slash(tmp_path: Path) -> None:
    text = MATRIX.replace('"https://matrix.example.org"', '"https://matrix.example.org/"')
    (chat,) = load_config(write(tmp_path, text)).chats
    assert chat.homeserver == "https://matrix.example.org"


def test_a_profile_names_its_chats_each_once_in_order(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, SLACK + MATRIX + '[profiles.me]\nchat = ["room", "lab", "room"]\n')
    )
    assert config.profiles[0].chats == ("room", "lab")


def test_the_examples_commented_out_in_config_example_toml_load(tmp_path: Path) -> None:
    """Uncommented, the example's [delivery] and [chat.NAME] tables and a profile's chat line are
    a valid config (their secrets are read only when sending: none is needed here)."""
    lines, inside = [], False
    for line in (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines():
        inside = (inside or line == "# [delivery]") and line != "[fetch]"
        bare = line.removeprefix("# ")
        if (inside and re.match(r"^(\[[\w.-]+\]|[a-z_]+ = )", bare)) or bare.startswith(
            "chat = "
        ):
            line = bare
        lines.append(line)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    config = load_config(path)
    assert config.delivery == DeliveryConfig()
    assert [(c.name, c.kind) for c in config.chats] == [
        ("lab", "slack"),
        ("reading-group", "discord"),
        ("matrix-lab", "matrix"),
        ("robot", "webhook"),
    ]
    assert config.profile("me").chats == ("lab",)


# -- mistakes: one line naming the place ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[chat.lab]\nkind = "teams"\nurl_env = "X"\n',
            "chat.lab.kind: unknown chat kind 'teams' (expected one of: slack, discord, matrix, "
            "webhook)",
        ),
        (
            '[chat.lab]\nurl_env = "X"\n',
            "chat.lab.kind: missing (expected one of: slack, discord, matrix, webhook)",
        ),
        (
            SLACK + "colour = 1\n",
            "chat.lab.colour: unknown key (expected one of: kind, max_items, url, url_env, "
            "url_file)",
        ),
        (
            SLACK + 'homeserver = "https://matrix.example.org"\n',
            "chat.lab.homeserver: unknown key (expected one of: kind, max_items, url, url_env, "
            "url_file)",
        ),
        (
            MATRIX + 'url_env = "X"\n',
            "chat.room.url_env: unknown key (expected one of: homeserver, kind, max_items, room, "
            "token_env, token_file)",
        ),
        (
            '[chat.lab]\nkind = "discord"\n',
            "chat.lab: missing the Discord webhook URL: expected one of url_env, url_file or url",
        ),
        (
            SLACK + 'url_file = "hook"\n',
            "chat.lab: expected one of url_env or url_file or url for the Slack webhook URL, "
            "got url_env and url_file",
        ),
        (
            MATRIX.replace('token_env = "ROOM_TOKEN"\n', ""),
            "chat.room: missing the Matrix access token: expected one of token_env or token_file",
        ),
        (
            MATRIX + 'token_file = "token"\n',
            "chat.room: expected one of token_env or token_file for the Matrix access token, "
            "got token_env and token_file",
        ),
        (
            MATRIX.replace('homeserver = "https://matrix.example.org"\n', ""),
            "chat.room.homeserver: missing: expected the homeserver's URL like "
            "'https://matrix.example.org'",
        ),
        (
            MATRIX.replace('"https://matrix.example.org"', '"http://matrix.example.org"'),
            "chat.room.homeserver: expected an https URL like 'https://matrix.example.org', "
            "got 'http://matrix.example.org'",
        ),
        (
            MATRIX.replace('room = "!abc:example.org"\n', ""),
            "chat.room.room: missing: expected the room's id like '!abc:example.org'",
        ),
        (
            MATRIX.replace('"!abc:example.org"', '"#lab:example.org"'),
            "chat.room.room: expected a room id like '!abc:example.org', got '#lab:example.org' "
            "(an alias: give the room's id, shown in its settings under Advanced)",
        ),
        (
            MATRIX.replace('"!abc:example.org"', '"!abc"'),
            "chat.room.room: expected a room id like '!abc:example.org', got '!abc'",
        ),
        (SLACK + "max_items = 0\n", "chat.lab.max_items: expected a number from 1 to 50, got 0"),
        (SLACK + "max_items = 51\n", "chat.lab.max_items: expected a number from 1 to 50, got 51"),
        (
            '[chat."lab.x"]\nkind = "slack"\nurl_env = "X"\n',
            "chat.lab.x: expected a name of letters, digits, '-' or '_'",
        ),
        ('[chat]\nkind = "slack"\n', "chat.kind: expected a table, got the string 'slack'"),
        (
            '[profiles.me]\nchat = ["lab"]\n',
            "profiles.me.chat[0]: no [chat.lab] table for profile 'me' (defined chats: none)",
        ),
        (
            SLACK + MATRIX + '[profiles.me]\nchat = ["lab", "ops"]\n',
            "profiles.me.chat[1]: no [chat.ops] table for profile 'me' (defined chats: lab, room)",
        ),
        (
            SLACK + '[profiles.me]\nchat = "lab"\n',
            'profiles.me.chat: expected a list of strings like ["lab"], got the string "lab"',
        ),
    ],
)
def test_every_chat_mistake_is_one_line_naming_the_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert error_for(tmp_path, text) == expected


# -- secrets: never inline for Matrix, never echoed -------------------------------------------------


def test_a_matrix_token_is_never_inline(tmp_path: Path) -> None:
    message = error_for(tmp_path, MATRIX + f'token = "{TOKEN}"\n')
    assert message == (
        "chat.room.token: the access token never goes into config.toml: name an environment "
        "variable (token_env) or a file holding it (token_file)"
    )
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f'[chat.lab]\nkind = "slack"\nurl_env = "{HOOK}"\n',
            "chat.lab.url_env: expected the name of an environment variable (letters, digits "
            "and '_'), not the Slack webhook URL itself",
        ),
        (
            MATRIX.replace('"ROOM_TOKEN"', f'"{TOKEN}-x"'),
            "chat.room.token_env: expected the name of an environment variable (letters, digits "
            "and '_'), not the Matrix access token itself",
        ),
        (
            f'[chat.lab]\nkind = "webhook"\nurl = "ftp{HOOK[5:]}"\n',
            "chat.lab.url: the URL is not an http(s) URL (not shown: it is a secret)",
        ),
        (
            f'[chat.lab]\nkind = "discord"\nurl = "{HOOK} x"\n',
            "chat.lab.url: the URL holds a space, a line break or a control character "
            "(not shown: it is a secret)",
        ),
        ('[chat.lab]\nkind = "slack"\nurl = " "\n', "chat.lab.url: the URL is empty"),
    ],
)
def test_a_secret_in_the_wrong_place_is_not_echoed(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = error_for(tmp_path, text)
    assert message.startswith(expected)
    assert "secret" not in message.replace("it is a secret", "")
    assert TOKEN not in message and HOOK[8:] not in message


def test_an_inline_url_is_not_in_the_repr(tmp_path: Path) -> None:
    (chat,) = load_config(write(tmp_path, f'[chat.any]\nkind = "webhook"\nurl = "{HOOK}"\n')).chats
    assert chat_secret(chat) == HOOK
    assert "XXXXsecretXXXX" not in repr(chat) and "XXXXsecretXXXX" not in str(chat)
    assert "name='any'" in repr(chat)


def test_secrets_are_read_from_the_environment_when_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, SLACK + MATRIX))
    lab, room = config.chats
    monkeypatch.delenv("LAB_HOOK", raising=False)
    monkeypatch.delenv("ROOM_TOKEN", raising=False)
    # Reading the config needs no secret: only sending does.
    assert secret_error(lab) == (
        "[chat.lab] url_env: the environment variable LAB_HOOK is not set "
        "(it should hold the Slack webhook URL)"
    )
    monkeypatch.setenv("LAB_HOOK", f"  {HOOK}\n")
    monkeypatch.setenv("ROOM_TOKEN", TOKEN)
    assert chat_secret(lab) == HOOK
    assert chat_secret(room) == TOKEN
    for chat in (lab, room):
        assert HOOK not in repr(chat) and TOKEN not in repr(chat)
    # An explicit environment wins over os.environ (what a caller passes in).
    assert chat_secret(lab, {"LAB_HOOK": "https://example.org/hook"}) == "https://example.org/hook"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "[chat.lab] url_env: the environment variable LAB_HOOK is empty"),
        (
            "ftp" + HOOK[5:],
            "[chat.lab] url_env: the value of LAB_HOOK is not an http(s) URL "
            "(not shown: it is a secret)",
        ),
        (
            HOOK + "\nX-Injected: 1",
            "[chat.lab] url_env: the value of LAB_HOOK holds a space, a line break or a control "
            "character (not shown: it is a secret)",
        ),
        ("http://[::1", "[chat.lab] url_env: the value of LAB_HOOK is not an http(s) URL"),
    ],
)
def test_a_bad_secret_in_the_environment_is_named_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    (lab,) = load_config(write(tmp_path, SLACK)).chats
    monkeypatch.setenv("LAB_HOOK", value)
    message = secret_error(lab)
    assert message.startswith(expected)
    if value.strip():
        assert value.strip() not in message and HOOK[8:] not in message


def test_secrets_are_read_from_files_when_sending(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    config = load_config(
        write(
            tmp_path,
            '[chat.ops]\nkind = "discord"\nurl_file = "secrets/discord"\n'
            + MATRIX.replace('token_env = "ROOM_TOKEN"', 'token_file = "secrets/matrix"'),
        )
    )
    ops, room = config.chats
    hook_file, token_file = secrets / "discord", secrets / "matrix"
    assert secret_error(ops).startswith(
        f"[chat.ops] url_file: cannot read {hook_file}: No such file or directory"
    )
    hook_file.write_text(HOOK + "\n", encoding="utf-8")
    token_file.write_text(f"\n {TOKEN}\r\n", encoding="utf-8")
    assert chat_secret(ops) == HOOK
    assert chat_secret(room) == TOKEN

    token_file.write_text("  \n", encoding="utf-8")
    assert secret_error(room) == (
        f"[chat.room] token_file: {token_file} is empty (it should hold the Matrix access token)"
    )
    token_file.write_bytes(b"syt_\xff\xfe" + TOKEN.encode())
    message = secret_error(room)
    assert message == f"[chat.room] token_file: {token_file} is not UTF-8 text"
    token_file.write_text(f"{TOKEN} {TOKEN}", encoding="utf-8")
    message = secret_error(room)
    assert message == (
        f"[chat.room] token_file: the text in {token_file} holds a space, a line break or a "
        "control character (not shown: it is a secret)"
    )
    hook_file.write_text("hooks.example.org/" + TOKEN, encoding="utf-8")
    message = secret_error(ops)
    assert message == (
        f"[chat.ops] url_file: the text in {hook_file} is not an http(s) URL "
        "(not shown: it is a secret)"
    )
    assert TOKEN not in message


# -- the CLI: exit 2, one line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[chat.lab]\nkind = "teams"\nurl_env = "X"\n',
            "chat.lab.kind: unknown chat kind 'teams' (expected one of: slack, discord, matrix, "
            "webhook)",
        ),
    ],
)
def test_the_cli_exits_2_with_one_line(tmp_path: Path, extra: str, expected: str) -> None:
    config = write_config(tmp_path, profiles="", extra=extra)
    result = digest(config, "status")
    assert result.exit_code == 2
    assert result.output == f"error: {config}: {expected}\n"


def test_the_cli_exits_2_naming_a_profiles_unknown_chat(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        profiles='[profiles.ml]\nkeywords = ["agent"]\nchat = ["lab", "ops"]\n',
        extra=SLACK,
    )
    result = digest(config, "status")
    assert result.exit_code == 2
    assert result.output == (
        f"error: {config}: profiles.ml.chat[1]: no [chat.ops] table for profile 'ml' "
        "(defined chats: lab)\n"
    )
