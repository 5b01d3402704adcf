"""config.toml -> a typed, frozen Config. Every mistake names the file, the key and what was expected.

    config.toml: sources.arxiv-lg.url: expected an http(s) URL, got 'ftp://x'

Relative paths in the file are taken relative to the file's own folder, so a config works from any
working directory. A source's local file must exist when the config is read (unless the source is
disabled, or its name holds {date}): a wrong path is found by every command, before any run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest import configcache
from digest.errors import ConfigError, DigestError
from digest.sources import SOURCE_KINDS

DEFAULT_CONFIG = "config.toml"
log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
# A sender may be a local mailbox ("digest@localhost"): no dot required in the domain.
_MAILBOX_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;.][^@\s<>\"',;]*$")
# What a source's URL or path may hold in braces, filled in by each run (digest.pipeline).
PLACEHOLDERS = {"date": "the run's date in UTC as YYYY-MM-DD"}
# A brace pair around a name (what a placeholder looks like); braces around anything else
# ("{}", "{1}", '{"a": 1}') are kept as they are.
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][^{}\s]*)\}")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    kind: str  # a key of digest.sources.SOURCE_KINDS
    urls: tuple[str, ...]  # http(s) or file:// URLs; "{date}" is filled with the run's UTC date
    # (a `path` becomes a file:// URL here, with any "{date}" in it kept as it is)
    schedule: str | None = None  # cron expression (five fields) for the scheduler
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FetchConfig:
    contact: str  # an email address or URL that site operators can reach you at
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    retries: int = 3
    deadline_s: float = 120.0  # one URL's whole fetch, every attempt and wait included
    replay_dir: Path | None = None  # serve captured responses from here instead of the network
    host_intervals: Mapping[str, float] = field(default_factory=dict)
    # Title-only papers (from text listings) looked up in the arXiv API per run; 0: never.
    resolve_titles: int = 50


FREQUENCIES = ("daily", "weekdays", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """A subscriber's interests, as config.toml states them (the ranking step reads these)."""

    name: str
    emails: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()  # words and phrases ("diffusion model"); case and plural folded
    authors: tuple[str, ...] = ()  # pinned authors
    categories: tuple[str, ...] = ()  # arXiv categories, e.g. cs.LG
    examples: tuple[str, ...] = ()  # papers liked: arXiv ids or titles
    negative_keywords: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    max_items: int = 20
    min_score: float = 0.0
    timezone: str = "UTC"
    frequency: str = "daily"  # daily | weekdays | weekly
    weekday: str = "monday"  # the day of a weekly digest
    community_signal: bool = True  # let Hugging Face upvotes nudge the ranking
    deliver_at: str = "07:00"  # local time (HH:MM) the digest is composed and sent, on due days
    chats: tuple[str, ...] = ()  # the [chat.NAME] tables the digest is posted to, by name


DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_SENDER = "paperdigest <paperdigest@localhost>"


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where digests go: feed files, the Maildir outbox, and the public address of both."""

    feeds_dir: Path
    outbox_dir: Path
    # Where feeds_dir is served, and (until `digest serve` exists) where unsubscribe links point.
    base_url: str = DEFAULT_BASE_URL
    feed_days: int = 7  # a profile's feed holds its digests of this many days
    feed_max_items: int = 200
    # A web subscriber's feed is rebuilt by a run only if read within this many days (or if it
    # is their only channel); `digest serve` builds the others when asked for. 0: always rebuilt
    # (feeds_dir served by another web server, which records no reads).
    personal_feed_window: int = 30


@dataclass(frozen=True, slots=True)
class EmailConfig:
    sender: str = DEFAULT_SENDER  # the From header
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None  # default: the From address
    send_empty: bool = True  # on a day with nothing above the threshold, say so (or send nothing)
    thumbnails: bool = True  # the sources' pictures in the HTML part (never in the text part)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """What every channel's delivery (mail, feeds, team chats) shares: the ledger's rules."""

    # A row a run claimed ('sending') longer ago than this was abandoned by a crashed run.
    claim_lease: timedelta = timedelta(minutes=15)
    # A message handed over without an answer ('uncertain') is sent again only after this.
    uncertain_quarantine: timedelta = timedelta(hours=24)
    # A run delivers nothing more this long after it started; the rest waits for the next run.
    # 40 minutes: an hourly job ends before the next starts, and before deploy/'s 45-minute kill.
    deadline: timedelta = timedelta(minutes=40)


# [email] keys of an unreleased version, now [delivery]'s: old -> new name.
_MOVED_TO_DELIVERY = {
    "claim_lease": "claim_lease",
    "uncertain_quarantine": "uncertain_quarantine",
    "mail_deadline": "deadline",
}


CHAT_KINDS = ("slack", "discord", "matrix", "webhook")
# The kinds whose one credential is a webhook URL (Matrix has a homeserver, a room and a token).
WEBHOOK_CHAT_KINDS = ("slack", "discord", "webhook")
CHAT_MAX_ITEMS = 50


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """A team chat a digest is posted to, [chat.NAME]. Its credential (a webhook URL, a Matrix
    access token) is named here and read only when sending, by chat_secret; an inline `url` is
    kept but never shown (repr)."""

    name: str
    kind: str  # one of CHAT_KINDS
    # slack, discord, webhook: the webhook URL, from exactly one of these.
    url_env: str | None = None  # the environment variable holding it
    url_file: Path | None = None  # or a file holding it (Docker/Kubernetes secrets)
    url: str | None = field(default=None, repr=False)  # or the URL itself, in config.toml
    # matrix: the homeserver's https URL, the room's id ("!abc:example.org") and the access token
    # from exactly one of token_env or token_file (never inline).
    homeserver: str | None = None
    room: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    max_items: int = 25  # papers shown in one message; the rest behind "… and N more"

    @property
    def secret_key(self) -> str:
        """The key that holds or names the credential: url_env, url_file, url, token_env or
        token_file (load_config sees to it that exactly one is set)."""
        for key in _SECRET_KEYS:
            if getattr(self, key) is not None:
                return key
        raise ConfigError(f"[chat.{self.name}]: no {_secret_what(self.kind)} is configured")


_SECRET_KEYS = ("url_env", "url_file", "url", "token_env", "token_file")
# An environment variable's name; anything else (a URL pasted into url_env) is never echoed.
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A chat's name is part of its ledger rows ("slack:lab"): no dots, no colons.
_CHAT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def chat_secret(chat: ChatConfig, environ: Mapping[str, str] | None = None) -> str:
    """The chat's credential (a webhook URL, or a Matrix access token), read now from the
    environment variable or the file its config names, surrounding whitespace stripped; a webhook
    URL must be http(s). A problem is a ConfigError of one line naming [chat.NAME] and the key,
    which never holds the secret or any part of it."""
    key = chat.secret_key
    place = f"[chat.{chat.name}] {key}"
    what = _secret_what(chat.kind)
    if key == "url":
        value = chat.url or ""
    elif key in ("url_env", "token_env"):
        variable = getattr(chat, key)
        env = os.environ if environ is None else environ
        if variable not in env:
            raise ConfigError(
                f"{place}: the environment variable {variable} is not set (it should hold {what})"
            )
        value = env[variable].strip()
        if not value:
            raise ConfigError(f"{place}: the environment variable {variable} is empty")
    else:
        path: Path = getattr(chat, key)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{place}: cannot read {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        except UnicodeDecodeError:  # its message would quote a byte of the secret
            raise ConfigError(f"{place}: {path} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{place}: {path} is empty (it should hold {what})")
    problem = _secret_problem(value, url=chat.kind in WEBHOOK_CHAT_KINDS)
    if problem:
        if key == "url":
            held = "the URL"
        elif key.endswith("_env"):
            held = f"the value of {getattr(chat, key)}"
        else:
            held = f"the text in {getattr(chat, key)}"
        raise ConfigError(f"{place}: {held} {problem} (not shown: it is a secret)")
    return value


def read_password(
    place: str,
    what: str,
    variable: str | None,
    path: Path | None,
    environ: Mapping[str, str],
    error: type[DigestError],
) -> str | None:
    """The password a table (`place`: "smtp", "store") names, read now: from its password_env
    `variable` or its password_file `path` (the line end stripped); None when it names neither.
    A problem is `error` of one line naming the key or the file, never holding the password."""
    if variable is not None:
        value = environ.get(variable)
        if not value:
            raise error(
                f"{place}.password_env: the environment variable {variable} is not set "
                f"(it should hold the {what} password)"
            )
        return value
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise error(
                f"{path}: cannot read the {what} password file: {exc.strerror or type(exc).__name__}"
            ) from None
        except UnicodeDecodeError:
            # Its message would quote a byte of the password.
            raise error(f"{path}: the {what} password file is not UTF-8 text") from None
        if not value:
            raise error(f"{path}: the {what} password file is empty")
        return value
    return None


def _secret_what(kind: str) -> str:
    return {
        "slack": "the Slack webhook URL",
        "discord": "the Discord webhook URL",
        "matrix": "the Matrix access token",
    }.get(kind, "the webhook URL")


def _secret_problem(value: str, *, url: bool) -> str | None:
    """What is wrong with a secret's value, in words that never quote it; None when it is fine."""
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "holds a space, a line break or a control character"
    if url:
        try:
            parts = urlsplit(value)
        except ValueError:
            return "is not an http(s) URL"
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "is not an http(s) URL"
    return None


SMTP_SECURITY = ("starttls", "tls", "none")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """An SMTP server to send through. The password is named here, read only when connecting."""

    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    password_file: Path | None = None  # or a file holding it (Docker/Kubernetes secrets)
    timeout_s: float = 30.0
    breaker: int = 3  # this many failures in a row to reach the server stop the run's mail


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = "text"  # text (for people) or json (one object per line, for collectors)
    level: str = "info"  # what `digest run` and `digest schedule` log: debug, info, warning, error


@dataclass(frozen=True, slots=True)
class RankConfig:
    embeddings: bool = True  # sentence embeddings beside the words; false ranks by words alone
    model: Path | None = None  # a folder with model.onnx and tokenizer.json; None: the shipped one


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """[store]: which store (the SQLite file in the data directory, or a PostgreSQL database
    named by `url` or `url_env`) and how long it keeps what it no longer needs (prune)."""

    # Digests (with their items and ledger rows), runs and HTTP validators older than this many
    # days go, once a day, at the end of a run; a digest a delivery still owes stays.
    keep_days: int = 90
    # PostgreSQL (issue 17): postgresql://user@host:5432/dbname, never with its password, or the
    # environment variable holding the whole URL (password included: a Kubernetes Secret).
    url: str | None = None
    url_env: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    password_file: Path | None = None  # or a file holding it (Docker/Kubernetes secrets)

    @property
    def postgresql(self) -> bool:
        """Whether the store is a PostgreSQL database (else the SQLite file)."""
        return self.url is not None or self.url_env is not None


_URL_SCHEMES = ("postgresql://", "postgres://")


def url_without_password(url: str) -> str:
    """A database URL as a message may show it: without the password in its user part or in a
    `password=` parameter (the one place such a URL is shown from)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = "&".join(
        item for item in parts.query.split("&") if item and not item.lower().startswith("password=")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_has_password(url: str) -> bool:
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return ":" in user or any(
        item.lower().startswith("password=") for item in parts.query.split("&")
    )


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    data_dir: Path
    fetch: FetchConfig
    sources: tuple[SourceConfig, ...]
    output: OutputConfig
    profiles: tuple[ProfileConfig, ...] = ()
    email: EmailConfig = EmailConfig()
    smtp: SmtpConfig | None = None  # None: digests go to the Maildir outbox
    log: LogConfig = LogConfig()
    rank: RankConfig = RankConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    chats: tuple[ChatConfig, ...] = ()
    store: StoreConfig = StoreConfig()

    @property
    def feeds_dir(self) -> Path:
        return self.output.feeds_dir

    @property
    def outbox_dir(self) -> Path:
        return self.output.outbox_dir

    @property
    def store_path(self) -> Path:
        return self.data_dir / "paperdigest.sqlite3"

    @property
    def store_name(self) -> str:
        """The store as a message names it: the SQLite file, or the PostgreSQL database's URL
        without its password (url_env's, read now; the variable's name when it is not set)."""
        if self.store.url is not None:
            return url_without_password(self.store.url)
        if self.store.url_env is not None:
            return url_without_password(os.environ.get(self.store.url_env) or f"${self.store.url_env}")
        return str(self.store_path)

    def profile(self, name: str) -> ProfileConfig:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        known = ", ".join(p.name for p in self.profiles) or "none"
        raise ConfigError(f"{self.path}: no profile named {name!r} (profiles: {known})")

    def chat(self, name: str) -> ChatConfig:
        for chat in self.chats:
            if chat.name == name:
                return chat
        known = ", ".join(c.name for c in self.chats) or "none"
        raise ConfigError(f"{self.path}: no [chat.{name}] table (chats: {known})")

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"{self.path}: no source named {name!r} (known: {known})")


def load_config(path: str | Path) -> Config:
    """Read and check a config file; raise ConfigError naming the place of the first mistake."""
    return load_config_head(path)[1]()


def load_config_head(path: str | Path) -> tuple[Config, Callable[[], Config]]:
    """The config, maybe without its profiles, and how to get the whole of it: for a big config
    kept by digest.configcache, its head (every table but the profiles, read in milliseconds) and
    a function that reads the profiles once; otherwise the whole config, read and checked (the
    function then gives it back). A caller that can stop before it needs a profile (an idle run) stops sooner."""
    path = Path(path)
    label = str(path)
    try:
        data = path.read_bytes()
        if kept := configcache.load_kept(path, data):  # a big config, unchanged since checked
            return kept.head, functools.cache(kept.whole)
        raw = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        hint = " (copy config.example.toml to start)" if path.name == DEFAULT_CONFIG else ""
        raise ConfigError(f"{label}: file not found{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read the file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    reader = _Reader(label, path.resolve().parent)
    config = reader.config(raw, path)
    configcache.save(path, data, config, reader.checked)
    return config, lambda: config


class _Reader:
    """Walks the parsed TOML once, checking each key; errors carry the dotted key path."""

    def __init__(self, label: str, base_dir: Path) -> None:
        self.label = label
        self.base_dir = base_dir
        self.checked: list[Path] = []  # the files whose being there the config was checked for

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.label}: {key}: {message}")

    def table(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a table, got {_describe(raw)}")
        for name in raw:
            if name not in allowed:
                choices = ", ".join(sorted(allowed))
                raise self.fail(
                    f"{key}.{name}" if key else name, f"unknown key (expected one of: {choices})"
                )
        return raw

    def string(self, raw: Any, key: str) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(key, f"expected a non-empty string, got {_describe(raw)}")
        return raw.strip()

    def strings(self, raw: Any, key: str, *, commas: bool = True) -> tuple[str, ...]:
        """A list of non-empty strings. A plain string is refused: `keywords = "agent, diffusion"`
        would otherwise be one phrase. The message shows the list form; with `commas`, the string
        split at its commas (off for URLs, paths, titles and "Family, Given" author names)."""
        if isinstance(raw, str):
            items = [p.strip("\"' ") for p in raw.split(",")] if commas else [raw.strip()]
            example = ", ".join(_toml_string(item) for item in items if item)
            raise self.fail(
                key,
                f"expected a list of strings like [{example}], got the string {_toml_string(raw)}",
            )
        if not isinstance(raw, list):
            raise self.fail(key, f"expected a list of strings, got {_describe(raw)}")
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(raw))

    def number(self, raw: Any, key: str, *, minimum: float, maximum: float) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise self.fail(key, f"expected a number, got {_describe(raw)}")
        if not minimum <= raw <= maximum:
            raise self.fail(key, f"expected a number from {minimum:g} to {maximum:g}, got {raw!r}")
        return float(raw)

    def boolean(self, raw: Any, key: str) -> bool:
        if not isinstance(raw, bool):
            raise self.fail(key, f"expected true or false, got {_describe(raw)}")
        return raw

    def path(self, raw: Any, key: str) -> Path:
        path = Path(self.string(raw, key)).expanduser()
        # normpath: "samples/../demo-data" is shown to people as "demo-data".
        return Path(os.path.normpath(path if path.is_absolute() else self.base_dir / path))

    def placeholders(self, text: str, key: str, *, in_url: bool) -> None:
        """Refuse a {name} that no run fills in (a typo such as {data} would be fetched as is)."""
        for match in _PLACEHOLDER_RE.finditer(text):
            if match.group(1) not in PLACEHOLDERS:
                supported = "; ".join(f"{{{name}}}, {what}" for name, what in PLACEHOLDERS.items())
                literal = "; a literal brace is written %7B or %7D" if in_url else ""
                raise self.fail(
                    key, f"unknown placeholder {match.group(0)} (supported: {supported}{literal})"
                )

    def source_file(self, raw: Any, key: str, *, check: bool) -> str:
        """A source's local file as a file:// URL ("{date}" kept for the run to fill in); with
        `check`, the file (or, when its name holds a placeholder, its folder) must exist."""
        text = self.string(raw, key)
        self.placeholders(text, key, in_url=False)
        path = self.path(text, key)
        if check:
            self.check_file(path, key, relative=not Path(text).expanduser().is_absolute())
        uri = path.as_uri()
        for name in PLACEHOLDERS:  # as_uri() quotes braces, and fetching unquotes the path
            uri = uri.replace(f"%7B{name}%7D", f"{{{name}}}")
        return uri

    def check_file(self, path: Path, key: str, *, relative: bool) -> None:
        hint = " (a relative path starts at the config file's folder)" if relative else ""
        templated = [i for i, part in enumerate(path.parts) if _PLACEHOLDER_RE.search(part)]
        self.checked.append(Path(*path.parts[: templated[0]]) if templated else path)
        if templated:  # the file changes with the date: only its folder can be checked now
            folder = Path(*path.parts[: templated[0]])
            if not folder.is_dir():
                raise self.fail(key, f"folder not found: {folder}{hint}")
        elif not path.exists():
            raise self.fail(key, f"file not found: {path}{hint}")
        elif path.is_dir():
            raise self.fail(key, f"expected a file, got the folder {path}")

    def url(self, raw: Any, key: str, *, check: bool = False) -> str:
        """An http(s) or file:// URL; with `check`, a file URL's file must exist."""
        text = self.string(raw, key)
        self.placeholders(text, key, in_url=True)
        parts = urlsplit(text)
        if parts.scheme == "file":
            if check:
                self.check_file(Path(unquote(parts.path)), key, relative=False)
            return text
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.fail(key, f"expected an http(s) URL, got {text!r}")
        return text

    def config(self, raw: dict[str, Any], path: Path) -> Config:
        top = self.table(
            raw,
            "",
            {
                "data_dir",
                "output",
                "fetch",
                "sources",
                "profiles",
                "email",
                "smtp",
                "log",
                "rank",
                "delivery",
                "chat",
                "store",
            },
        )
        data_dir = self.path(top.get("data_dir", "data"), "data_dir")
        sources_raw = top.get("sources", {})
        sources_table = self.table(
            sources_raw, "sources", set(sources_raw) if isinstance(sources_raw, dict) else set()
        )
        profiles_raw = top.get("profiles", {})
        profiles_table = self.table(
            profiles_raw, "profiles", set(profiles_raw) if isinstance(profiles_raw, dict) else set()
        )
        sources = tuple(self.source(name, value) for name, value in sources_table.items())
        if not sources:
            raise self.fail("sources", "expected at least one [sources.NAME] table")
        chats_raw = top.get("chat", {})
        chats_table = self.table(
            chats_raw, "chat", set(chats_raw) if isinstance(chats_raw, dict) else set()
        )
        chats = tuple(self.chat(name, value) for name, value in chats_table.items())
        return Config(
            path=path,
            data_dir=data_dir,
            fetch=self.fetch(top.get("fetch"), "fetch"),
            sources=sources,
            output=self.output(top.get("output", {}), "output", data_dir),
            profiles=tuple(
                self.profile(name, value, chats) for name, value in profiles_table.items()
            ),
            email=self.email(top.get("email", {}), "email"),
            smtp=self.smtp(top["smtp"], "smtp") if "smtp" in top else None,
            log=self.log(top.get("log", {}), "log"),
            rank=self.rank(top.get("rank", {}), "rank"),
            delivery=self.delivery(top.get("delivery", {}), "delivery"),
            chats=chats,
            # output (read above, so well-formed) says how many days of digests its feeds show
            store=self.store(
                top.get("store", {}), "store", int(top.get("output", {}).get("feed_days", 7))
            ),
        )

    def store(self, raw: Any, key: str, feed_days: int) -> StoreConfig:
        """[store]; keep_days may not be shorter than the feeds' window (feed_days)."""
        table = self.table(
            raw, key, {"keep_days", "url", "url_env", "password_env", "password_file"}
        )
        keep_days = table.get("keep_days", 90)
        if isinstance(keep_days, bool) or not isinstance(keep_days, int):
            raise self.fail(f"{key}.keep_days", f"expected a whole number of days, got {_describe(keep_days)}")
        self.number(keep_days, f"{key}.keep_days", minimum=7, maximum=3650)
        if keep_days < feed_days:
            raise self.fail(
                f"{key}.keep_days",
                f"expected at least output.feed_days ({feed_days}): a feed shows the digests of "
                f"that many days, got {keep_days}",
            )
        url = self.string(table["url"], f"{key}.url") if "url" in table else None
        url_env = self.string(table["url_env"], f"{key}.url_env") if "url_env" in table else None
        password_env = table.get("password_env")
        password_file = table.get("password_file")
        if url is not None and url_env is not None:
            raise self.fail(key, "expected url or url_env, not both")
        if password_env is not None and password_file is not None:
            raise self.fail(key, "expected password_env or password_file, not both")
        if url is None and url_env is None and (password_env or password_file) is not None:
            raise self.fail(key, "password_env and password_file are for a PostgreSQL url")
        if url is not None:
            if not url.startswith(_URL_SCHEMES):
                raise self.fail(
                    f"{key}.url",
                    "expected a PostgreSQL URL such as postgresql://user@host:5432/dbname, got "
                    f"{url_without_password(url)!r}",
                )
            if url_has_password(url):
                raise self.fail(
                    f"{key}.url",
                    "the URL holds a password: name it with password_env (an environment "
                    "variable) or password_file, or use url_env; the password itself never "
                    "goes into config.toml",
                )
        return StoreConfig(
            keep_days=keep_days,
            url=url,
            url_env=url_env,
            password_env=self.string(password_env, f"{key}.password_env")
            if password_env is not None
            else None,
            password_file=self.path(password_file, f"{key}.password_file")
            if password_file is not None
            else None,
        )

    def delivery(self, raw: Any, key: str) -> DeliveryConfig:
        table = self.table(raw, key, {"claim_lease", "uncertain_quarantine", "deadline"})
        return DeliveryConfig(
            claim_lease=timedelta(
                minutes=self.number(
                    table.get("claim_lease", 15), f"{key}.claim_lease", minimum=1, maximum=1440
                )
            ),
            uncertain_quarantine=timedelta(
                hours=self.number(
                    table.get("uncertain_quarantine", 24),
                    f"{key}.uncertain_quarantine",
                    minimum=0,
                    maximum=720,
                )
            ),
            deadline=timedelta(
                minutes=self.number(
                    table.get("deadline", 40), f"{key}.deadline", minimum=1, maximum=1440
                )
            ),
        )

    def chat(self, name: str, raw: Any) -> ChatConfig:
        key = f"chat.{name}"
        if not _CHAT_NAME_RE.match(name):
            raise self.fail(key, "expected a name of letters, digits, '-' or '_'")
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a table, got {_describe(raw)}")
        if "kind" not in raw:
            raise self.fail(f"{key}.kind", f"missing (expected one of: {', '.join(CHAT_KINDS)})")
        kind = self.string(raw["kind"], f"{key}.kind")
        if kind not in CHAT_KINDS:
            raise self.fail(
                f"{key}.kind",
                f"unknown chat kind {kind!r} (expected one of: {', '.join(CHAT_KINDS)})",
            )
        if kind == "matrix":
            if "token" in raw:
                raise self.fail(
                    f"{key}.token",
                    "the access token never goes into config.toml: name an environment "
                    "variable (token_env) or a file holding it (token_file)",
                )
            sources: tuple[str, ...] = ("token_env", "token_file")
            allowed = {"kind", "max_items", "homeserver", "room", *sources}
        else:
            sources = ("url_env", "url_file", "url")
            allowed = {"kind", "max_items", *sources}
        table = self.table(raw, key, allowed)
        given = [source for source in sources if source in table]
        what = _secret_what(kind)
        if not given:
            options = " or ".join(sources) if kind == "matrix" else "url_env, url_file or url"
            raise self.fail(key, f"missing {what}: expected one of {options}")
        if len(given) > 1:
            raise self.fail(
                key, f"expected one of {' or '.join(sources)} for {what}, got {' and '.join(given)}"
            )
        (source,) = given
        named: dict[str, Any] = {}
        if source.endswith("_env"):
            # A pasted URL or token is never echoed: the name alone is checked.
            variable = table[source]
            if not isinstance(variable, str) or not _ENV_NAME_RE.match(variable.strip()):
                raise self.fail(
                    f"{key}.{source}",
                    "expected the name of an environment variable (letters, digits and '_'), "
                    f"not {what} itself",
                )
            named[source] = variable.strip()
        elif source.endswith("_file"):
            named[source] = self.path(table[source], f"{key}.{source}")
        else:  # an inline webhook URL: checked, never quoted
            url = table["url"]
            if not isinstance(url, str):
                raise self.fail(f"{key}.url", f"expected {what} as a string, got {_describe(url)}")
            url = url.strip()
            problem = _secret_problem(url, url=True) if url else "is empty"
            if problem:
                raise self.fail(f"{key}.url", f"the URL {problem} (not shown: it is a secret)")
            named["url"] = url
        if kind == "matrix":
            for needed in ("homeserver", "room"):
                if needed not in table:
                    example = (
                        "the homeserver's URL like 'https://matrix.example.org'"
                        if needed == "homeserver"
                        else "the room's id like '!abc:example.org'"
                    )
                    raise self.fail(f"{key}.{needed}", f"missing: expected {example}")
            homeserver = self.string(table["homeserver"], f"{key}.homeserver")
            parts = urlsplit(homeserver)
            if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
                raise self.fail(
                    f"{key}.homeserver",
                    f"expected an https URL like 'https://matrix.example.org', got {homeserver!r}",
                )
            room = self.string(table["room"], f"{key}.room")
            local, colon, server = room[1:].partition(":")
            if not (room.startswith("!") and local and colon and server) or any(
                ch.isspace() for ch in room
            ):
                hint = (
                    " (an alias: give the room's id, shown in its settings under Advanced)"
                    if room.startswith("#")
                    else ""
                )
                raise self.fail(
                    f"{key}.room", f"expected a room id like '!abc:example.org', got {room!r}{hint}"
                )
            named["homeserver"] = homeserver.rstrip("/")
            named["room"] = room
        return ChatConfig(
            name=name,
            kind=kind,
            max_items=int(
                self.number(
                    table.get("max_items", 25),
                    f"{key}.max_items",
                    minimum=1,
                    maximum=CHAT_MAX_ITEMS,
                )
            ),
            **named,
        )

    def rank(self, raw: Any, key: str) -> RankConfig:
        table = self.table(raw, key, {"embeddings", "model"})
        model = self.path(table["model"], f"{key}.model") if "model" in table else None
        if model is not None and not model.is_dir():
            raise self.fail(f"{key}.model", f"expected a folder holding model.onnx, got {model}")
        return RankConfig(
            embeddings=self.boolean(table.get("embeddings", True), f"{key}.embeddings"),
            model=model,
        )

    def log(self, raw: Any, key: str) -> LogConfig:
        table = self.table(raw, key, {"format", "level"})
        return LogConfig(
            format=self.choice(table.get("format", "text"), f"{key}.format", ("text", "json")),
            level=self.choice(
                table.get("level", "info"), f"{key}.level", ("debug", "info", "warning", "error")
            ),
        )

    def output(self, raw: Any, key: str, data_dir: Path) -> OutputConfig:
        table = self.table(
            raw,
            key,
            {
                "feeds_dir", "outbox_dir", "base_url", "feed_days", "feed_max_items",
                "personal_feed_window",
            },
        )
        base_url = self.url(table.get("base_url", DEFAULT_BASE_URL), f"{key}.base_url")
        if base_url.startswith("file:"):
            raise self.fail(f"{key}.base_url", f"expected an http(s) URL, got {base_url!r}")
        return OutputConfig(
            feeds_dir=self.path(table["feeds_dir"], f"{key}.feeds_dir")
            if "feeds_dir" in table
            else data_dir / "feeds",
            outbox_dir=self.path(table["outbox_dir"], f"{key}.outbox_dir")
            if "outbox_dir" in table
            else data_dir / "outbox",
            base_url=base_url.rstrip("/"),
            feed_days=int(
                self.number(table.get("feed_days", 7), f"{key}.feed_days", minimum=1, maximum=90)
            ),
            feed_max_items=int(
                self.number(
                    table.get("feed_max_items", 200),
                    f"{key}.feed_max_items",
                    minimum=1,
                    maximum=1000,
                )
            ),
            personal_feed_window=int(
                self.number(
                    table.get("personal_feed_window", 30),
                    f"{key}.personal_feed_window",
                    minimum=0,
                    maximum=3650,
                )
            ),
        )

    def address(self, raw: Any, key: str, *, named: bool = False) -> str:
        """An email address; with `named`, also 'Name <address>'."""
        text = self.string(raw, key)
        if any(ch in text for ch in "\r\n"):
            raise self.fail(key, "expected one line, got a line break")
        bare = text
        if named and text.endswith(">") and "<" in text:
            bare = text[text.rindex("<") + 1 : -1]
        if not _MAILBOX_RE.match(bare):
            raise self.fail(key, f"expected an email address, got {text!r}")
        return text

    def email(self, raw: Any, key: str) -> EmailConfig:
        allowed = {"from", "reply_to", "unsubscribe_mailto", "send_empty", "thumbnails"}
        if isinstance(raw, dict):
            for old, new in _MOVED_TO_DELIVERY.items():
                if old in raw:
                    choices = ", ".join(sorted(allowed))
                    raise self.fail(
                        f"{key}.{old}",
                        f"unknown key (expected one of: {choices}); "
                        f"it moved to [delivery] as {new}",
                    )
        table = self.table(raw, key, allowed)
        return EmailConfig(
            sender=self.address(table["from"], f"{key}.from", named=True)
            if "from" in table
            else DEFAULT_SENDER,
            reply_to=self.address(table["reply_to"], f"{key}.reply_to", named=True)
            if "reply_to" in table
            else None,
            unsubscribe_mailto=self.address(
                table["unsubscribe_mailto"], f"{key}.unsubscribe_mailto"
            )
            if "unsubscribe_mailto" in table
            else None,
            send_empty=self.boolean(table.get("send_empty", True), f"{key}.send_empty"),
            thumbnails=self.boolean(table.get("thumbnails", True), f"{key}.thumbnails"),
        )

    def smtp(self, raw: Any, key: str) -> SmtpConfig:
        table = self.table(
            raw,
            key,
            {
                "host",
                "port",
                "security",
                "username",
                "password_env",
                "password_file",
                "timeout",
                "breaker",
            },
        )
        if "host" not in table:
            raise self.fail(f"{key}.host", "missing: the SMTP server's host name")
        security = self.choice(table.get("security", "starttls"), f"{key}.security", SMTP_SECURITY)
        default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
        password_env = table.get("password_env")
        password_file = table.get("password_file")
        if password_env is not None and password_file is not None:
            raise self.fail(key, "expected password_env or password_file, not both")
        username = (
            self.string(table["username"], f"{key}.username") if "username" in table else None
        )
        if username and password_env is None and password_file is None:
            raise self.fail(
                key,
                "a username needs password_env (an environment variable) or password_file; "
                "the password itself never goes into config.toml",
            )
        return SmtpConfig(
            host=self.string(table["host"], f"{key}.host"),
            port=int(
                self.number(
                    table.get("port", default_port), f"{key}.port", minimum=1, maximum=65535
                )
            ),
            security=security,
            username=username,
            password_env=self.string(password_env, f"{key}.password_env")
            if password_env is not None
            else None,
            password_file=self.path(password_file, f"{key}.password_file")
            if password_file is not None
            else None,
            timeout_s=self.number(
                table.get("timeout", 30), f"{key}.timeout", minimum=1, maximum=600
            ),
            breaker=int(
                self.number(table.get("breaker", 3), f"{key}.breaker", minimum=1, maximum=100)
            ),
        )

    def fetch(self, raw: Any, key: str) -> FetchConfig:
        if raw is None:
            raise self.fail(
                key, 'missing: a [fetch] table with contact = "you@example.org" is required'
            )
        table = self.table(
            raw,
            key,
            {
                "contact",
                "connect_timeout",
                "read_timeout",
                "max_mb",
                "retries",
                "deadline",
                "replay_dir",
                "host_intervals",
                "resolve_titles",
            },
        )
        if "contact" not in table:
            raise self.fail(
                f"{key}.contact", "missing: sites ask for a contact address in the User-Agent"
            )
        contact = self.string(table["contact"], f"{key}.contact")
        if not (_EMAIL_RE.match(contact) or contact.startswith(("https://", "http://"))):
            raise self.fail(
                f"{key}.contact", f"expected an email address or http(s) URL, got {contact!r}"
            )
        intervals_raw = self.table(
            table.get("host_intervals", {}),
            f"{key}.host_intervals",
            set(table.get("host_intervals", {}))
            if isinstance(table.get("host_intervals"), dict)
            else set(),
        )
        intervals = {
            host: self.number(value, f"{key}.host_intervals.{host}", minimum=0, maximum=3600)
            for host, value in intervals_raw.items()
        }
        replay = table.get("replay_dir")
        return FetchConfig(
            contact=contact,
            connect_timeout_s=self.number(
                table.get("connect_timeout", 10), f"{key}.connect_timeout", minimum=0.1, maximum=600
            ),
            read_timeout_s=self.number(
                table.get("read_timeout", 30), f"{key}.read_timeout", minimum=0.1, maximum=600
            ),
            max_bytes=int(
                self.number(table.get("max_mb", 10), f"{key}.max_mb", minimum=0.001, maximum=1024)
                * 1024
                * 1024
            ),
            retries=int(
                self.number(table.get("retries", 3), f"{key}.retries", minimum=0, maximum=10)
            ),
            deadline_s=self.number(
                table.get("deadline", 120), f"{key}.deadline", minimum=1, maximum=3600
            ),
            replay_dir=self.path(replay, f"{key}.replay_dir") if replay is not None else None,
            host_intervals=intervals,
            resolve_titles=int(self.number(
                table.get("resolve_titles", 50), f"{key}.resolve_titles", minimum=0, maximum=1000
            )),
        )

    def source(self, name: str, raw: Any) -> SourceConfig:
        key = f"sources.{name}"
        if not _NAME_RE.match(name):
            raise self.fail(key, "expected a name of letters, digits, '-', '_' or '.'")
        table = self.table(
            raw, key, {"kind", "url", "urls", "path", "paths", "schedule", "enabled"}
        )
        if "kind" not in table:
            raise self.fail(f"{key}.kind", f"missing (expected one of: {', '.join(SOURCE_KINDS)})")
        kind = self.string(table["kind"], f"{key}.kind")
        if kind not in SOURCE_KINDS:
            raise self.fail(
                f"{key}.kind",
                f"unknown source kind {kind!r} (expected one of: {', '.join(SOURCE_KINDS)})",
            )
        given = [k for k in ("url", "urls", "path", "paths") if k in table]
        if len(given) != 1:
            raise self.fail(key, "expected exactly one of url, urls, path or paths")
        enabled = self.boolean(table.get("enabled", True), f"{key}.enabled")
        # A disabled source is read by no run: its file may be missing (a source kept for later).
        if "url" in table:
            urls: tuple[str, ...] = (self.url(table["url"], f"{key}.url", check=enabled),)
        elif "urls" in table:
            urls = tuple(
                self.url(u, f"{key}.urls[{i}]", check=enabled)
                for i, u in enumerate(self.strings(table["urls"], f"{key}.urls", commas=False))
            )
            if not urls:
                raise self.fail(f"{key}.urls", "expected at least one URL")
        elif "path" in table:
            urls = (self.source_file(table["path"], f"{key}.path", check=enabled),)
        else:
            paths = self.strings(table["paths"], f"{key}.paths", commas=False)
            urls = tuple(
                self.source_file(p, f"{key}.paths[{i}]", check=enabled)
                for i, p in enumerate(paths)
            )
            if not urls:
                raise self.fail(f"{key}.paths", "expected at least one path")
        schedule = table.get("schedule")
        if schedule is not None:
            schedule = self.string(schedule, f"{key}.schedule")
            problem = cron_problem(schedule)
            if problem:
                raise self.fail(
                    f"{key}.schedule", f"expected a cron expression like '0 1 * * 1-5': {problem}"
                )
        return SourceConfig(
            name=name,
            kind=kind,
            urls=urls,
            schedule=schedule,
            enabled=enabled,
        )

    def profile(self, name: str, raw: Any, chats: tuple[ChatConfig, ...] = ()) -> ProfileConfig:
        key = f"profiles.{name}"
        if not _NAME_RE.match(name):
            raise self.fail(key, "expected a name of letters, digits, '-', '_' or '.'")
        table = self.table(
            raw,
            key,
            {
                "email",
                "keywords",
                "authors",
                "categories",
                "examples",
                "negative_keywords",
                "exclude_categories",
                "max_items",
                "min_score",
                "timezone",
                "frequency",
                "weekday",
                "community_signal",
                "deliver_at",
                "chat",
            },
        )
        emails = self.strings(table.get("email", []), f"{key}.email")
        defined = [chat.name for chat in chats]
        chat_names: dict[str, None] = {}  # in order, each once
        for i, chat_name in enumerate(self.strings(table.get("chat", []), f"{key}.chat")):
            if chat_name not in defined:
                known = ", ".join(defined) or "none"
                raise self.fail(
                    f"{key}.chat[{i}]",
                    f"no [chat.{chat_name}] table for profile {name!r} (defined chats: {known})",
                )
            chat_names[chat_name] = None
        for i, email in enumerate(emails):
            if not _EMAIL_RE.match(email):
                raise self.fail(f"{key}.email[{i}]", f"expected an email address, got {email!r}")
        timezone = self.string(table.get("timezone", "UTC"), f"{key}.timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                f"{key}.timezone",
                f"expected an IANA time zone like 'Europe/Berlin', got {timezone!r}",
            ) from None
        return ProfileConfig(
            name=name,
            emails=emails,
            keywords=self.terms(table, "keywords", key),
            authors=self.terms(table, "authors", key, commas=False),  # "LeCun, Yann"
            categories=self.terms(table, "categories", key),
            examples=self.terms(table, "examples", key, commas=False),  # titles
            negative_keywords=self.terms(table, "negative_keywords", key),
            exclude_categories=self.terms(table, "exclude_categories", key),
            max_items=int(
                self.number(table.get("max_items", 20), f"{key}.max_items", minimum=1, maximum=200)
            ),
            min_score=self.number(
                table.get("min_score", 0.0), f"{key}.min_score", minimum=0, maximum=1000
            ),
            timezone=timezone,
            frequency=self.choice(table.get("frequency", "daily"), f"{key}.frequency", FREQUENCIES),
            weekday=self.choice(table.get("weekday", "monday"), f"{key}.weekday", WEEKDAYS),
            community_signal=self.boolean(
                table.get("community_signal", True), f"{key}.community_signal"
            ),
            deliver_at=self.clock_time(table.get("deliver_at", "07:00"), f"{key}.deliver_at"),
            chats=tuple(chat_names),
        )

    def terms(
        self, table: dict[str, Any], name: str, key: str, *, commas: bool = True
    ) -> tuple[str, ...]:
        """A list of strings with surrounding quotes dropped and repeats (any case) left out, with a warning."""
        terms: dict[str, str] = {}
        for term in self.strings(table.get(name, []), f"{key}.{name}", commas=commas):
            term = term.strip("\"' ")
            if term and term.casefold() in terms:
                log.warning(
                    "%s: %s.%s: %r is listed twice; using it once", self.label, key, name, term
                )
            elif term:
                terms[term.casefold()] = term
        return tuple(terms.values())

    def clock_time(self, raw: Any, key: str) -> str:
        text = self.string(raw, key)
        hours, _, minutes = text.partition(":")
        if not (
            hours.isdigit()
            and minutes.isdigit()
            and len(minutes) == 2
            and int(hours) < 24
            and int(minutes) < 60
        ):
            raise self.fail(key, f"expected a time of day like '07:30', got {text!r}")
        return f"{int(hours):02d}:{minutes}"

    def choice(self, raw: Any, key: str, choices: tuple[str, ...]) -> str:
        value = self.string(raw, key).lower()
        if value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, got {raw!r}")
        return value


# Cron: minute hour day-of-month month day-of-week, with *, lists, ranges, steps and names.
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: number for number, name in enumerate(_MONTHS, start=1)}),
    ("day of week", 0, 7, {name: number for number, name in enumerate(_WEEKDAYS)}),
)


def cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, or None when it is fine."""
    parts = expression.split()
    if len(parts) != 5:
        return f"expected 5 fields, got {len(parts)}"
    for part, (label, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            body, _, step = item.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return f"bad step {step!r} in the {label} field"
            if body == "*":
                continue
            bounds = body.split("-")
            if len(bounds) > 2:
                return f"bad range {body!r} in the {label} field"
            values = []
            for bound in bounds:
                value = names.get(bound.lower()) if not bound.isdigit() else int(bound)
                if value is None or not low <= value <= high:
                    return f"{bound!r} is not a valid {label} ({low}-{high})"
                values.append(value)
            if len(values) == 2 and values[0] > values[1]:
                return f"empty range {body!r} in the {label} field"
    return None


def _toml_string(text: str) -> str:
    """A string as TOML writes it (a JSON string is a TOML basic string), on one line."""
    return json.dumps(text, ensure_ascii=False)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"
