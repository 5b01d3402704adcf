"""Subscriptions made on the web: the form's checks, the double opt-in, and profiles for the job.

A web subscriber is a profile of its own, named "web-" plus random hex, kept in the store beside the
profiles of config.toml. It starts as `pending`; only the person who can read the address's mail can
make it `active` (the confirmation link), so an unconfirmed address receives nothing but that one
confirmation. `with_subscribers(config, store)` gives the job the active ones as ordinary profiles.

Everything here is pure except the functions taking a store; the web app does the HTTP.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from digest import categories
from digest.config import FREQUENCIES, WEEKDAYS, Config, ProfileConfig
from digest.models import Interests, Subscriber
from digest.store import SubscriberStore
from digest.text import one_line

WEB_PREFIX = "web-"
MAX_TERMS = 30  # per field
MAX_TERM_CHARS = 120
MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a path
# How the digest reaches a web subscriber (the manage form's `channels`): "email" (by email and
# in the personal feed, the default) or "feed" (the feed only: no digest mails).
CHANNELS = ("email", "feed")
# At most this many confirmation mails to one address a day, and to anyone an hour: a form that
# sends mail must not become a way to flood someone's inbox, or to burn the sender's reputation.
# Past the hourly budget a mail waits its turn (digest.web.signups); it is not dropped.
CONFIRMATIONS_PER_ADDRESS_PER_DAY = 3
CONFIRMATIONS_PER_HOUR = 200
MAIL_BUDGET_WINDOW = timedelta(hours=1)
# Sign-ups (mailed or waiting) per client network an hour: a flood from one place cannot use
# up the hour's budget; past the hour's budget, mails wait in a queue, fairest network first.
SIGNUPS_PER_NETWORK_PER_HOUR = 20

_ARXIV_ID_RE = re.compile(r"(?<![\w.])(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?(?![\w.])")
_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
def _canonical_zones() -> tuple[str, ...]:
    """The zones the tz database lists for the world's countries (its zone.tab, shipped by the
    tzdata package): "Asia/Kolkata", not the old "Asia/Calcutta" or "US/Eastern"; and UTC."""
    known = available_timezones()
    try:
        table = (resources.files("tzdata.zoneinfo") / "zone.tab").read_text("utf-8")
    except (ModuleNotFoundError, OSError):  # a system tz database alone: every named zone
        return tuple(sorted(z for z in known if "/" in z or z == "UTC"))
    listed = {line.split("\t")[2] for line in table.splitlines() if line and line[0] != "#"}
    return (*sorted(listed & known), "UTC")


TIMEZONES = _canonical_zones()  # what the forms offer


@functools.cache
def zone_aliases() -> dict[str, str]:
    """Older names of the offered zones ("Asia/Calcutta": "Asia/Kolkata"), for a browser that
    reports one (Chromium does): a name whose tz data is byte for byte an offered zone's."""
    def data(zone: str) -> bytes | None:
        try:
            return (resources.files("tzdata.zoneinfo") / zone).read_bytes()
        except (ModuleNotFoundError, OSError):  # a name only the system's tz database has
            return None

    offered: dict[bytes, str] = {}
    for zone in TIMEZONES:
        offered.setdefault(data(zone) or zone.encode(), zone)
    aliases = {}
    for zone in sorted(available_timezones() - set(TIMEZONES)):
        found = data(zone)
        if found is not None and found in offered:
            aliases[zone] = offered[found]
    return aliases


def is_web_profile(name: str) -> bool:
    return name.startswith(WEB_PREFIX)


def new_profile_name() -> str:
    # Random, so the personal feed's URL cannot be guessed from anything about the person.
    return WEB_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class FormResult:
    """The checked form: the values to show again, and either Interests or a message per field."""

    values: Mapping[str, str]
    address: str | None
    interests: Interests | None
    errors: Mapping[str, str]


def split_terms(text: str) -> list[str]:
    """A textarea of terms: one per line or separated by commas."""
    return [term for term in (one_line(part) for part in re.split(r"[,\n]", text)) if term]


def check_address(text: str) -> tuple[str | None, str | None]:
    """(the address, lower case) or (None, what is wrong with it)."""
    text = text.strip()
    if not text:
        return None, "Enter your email address."
    if len(text) > MAX_ADDRESS_CHARS or any(ch in text for ch in "\r\n\0"):
        return None, "This is not an email address."
    try:
        checked = validate_email(text, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError as exc:
        return None, f"This is not a usable email address: {exc}"
    return checked.normalized.lower(), None


def read_form(form: Mapping[str, str], *, with_address: bool) -> FormResult:
    """Check the subscribe (with_address) or manage form; never raises on bad input."""
    values = {key: str(form.get(key, ""))[:4000] for key in FORM_FIELDS}
    errors: dict[str, str] = {}
    address: str | None = None
    if with_address:
        address, problem = check_address(values["email"])
        if problem:
            errors["email"] = problem

    lists: dict[str, tuple[str, ...]] = {}
    for name in ("keywords", "authors", "categories", "examples"):
        terms = split_terms(values[name])
        unique = tuple(dict.fromkeys(terms, None))
        too_long = [term for term in unique if len(term) > MAX_TERM_CHARS]
        if len(unique) > MAX_TERMS:
            errors[name] = f"Up to {MAX_TERMS} entries, please ({len(unique)} given)."
        elif too_long:
            errors[name] = f"Keep each entry under {MAX_TERM_CHARS} characters."
        lists[name] = unique
    # arXiv's own categories only: a typo would make a subscription that never matches.
    bad_categories = [c for c in lists["categories"] if categories.canonical(c) is None]
    if bad_categories and "categories" not in errors:
        near = categories.nearest(bad_categories[0])
        hint = f" Did you mean {near}?" if near else " Use names like cs.LG or hep-th."
        errors["categories"] = f"Not an arXiv category: {bad_categories[0]!r}.{hint}"
    lists["categories"] = tuple(
        dict.fromkeys(categories.canonical(c) or c for c in lists["categories"])
    )
    examples: list[str] = []
    for example in lists["examples"]:
        found = _ARXIV_ID_RE.search(example)
        if found is None:
            errors.setdefault("examples", f"Not an arXiv id or link: {example!r}. Use ids like 2401.01234.")
        else:
            examples.append(found.group(1))
    lists["examples"] = tuple(dict.fromkeys(examples))
    if not any(lists.values()) and not errors.keys() & set(lists):
        errors["keywords"] = "Give at least one keyword, author, category or example paper."

    frequency = values["frequency"] or "daily"
    if frequency not in FREQUENCIES:
        errors["frequency"] = "Choose daily, weekdays or weekly."
    weekday = values["weekday"] or "monday"
    if weekday not in WEEKDAYS:
        errors["weekday"] = "Choose a day of the week."
    timezone = values["timezone"] or "UTC"
    try:
        ZoneInfo(timezone)
        # An older name (a subscription made before, "Asia/Calcutta") is still a zone.
        if timezone not in TIMEZONES and "/" not in timezone:
            raise ZoneInfoNotFoundError(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = "Choose a time zone from the list."
    deliver_at = values["deliver_at"] or "07:00"
    clock = _CLOCK_RE.match(deliver_at)
    if clock is None:
        errors["deliver_at"] = "Give a time of day like 07:30."
    else:
        deliver_at = f"{int(clock.group(1)):02d}:{clock.group(2)}"
    channels = values["channels"] or "email"  # the subscribe form has no choice: email and feed
    if channels not in CHANNELS:
        errors["channels"] = "Choose email and feed, or feed only."

    interests = None
    if not errors:
        interests = Interests(
            keywords=lists["keywords"],
            authors=lists["authors"],
            categories=lists["categories"],
            examples=lists["examples"],
            frequency=frequency,
            weekday=weekday,
            timezone=timezone,
            deliver_at=deliver_at,
            email=channels == "email",
        )
    return FormResult(values=values, address=address, interests=interests, errors=errors)


FORM_FIELDS = (
    "email",
    "keywords",
    "authors",
    "categories",
    "examples",
    "frequency",
    "weekday",
    "timezone",
    "deliver_at",
    "channels",
)


def form_values(interests: Interests, address: str = "") -> dict[str, str]:
    """A subscriber's interests as the form shows them."""
    return {
        "email": address,
        "keywords": "\n".join(interests.keywords),
        "authors": "\n".join(interests.authors),
        "categories": "\n".join(interests.categories),
        "examples": "\n".join(interests.examples),
        "frequency": interests.frequency,
        "weekday": interests.weekday,
        "timezone": interests.timezone,
        "deliver_at": interests.deliver_at,
        "channels": "email" if interests.email else "feed",
    }


def to_profile(subscriber: Subscriber) -> ProfileConfig:
    """The subscriber as a profile of the job. Feed only: no address, so no digest mail is made,
    and one made before the switch is not sent (the mail builder sends only to profile.emails)."""
    interests = subscriber.interests
    return ProfileConfig(
        name=subscriber.profile,
        emails=(subscriber.address,) if interests.email else (),
        keywords=interests.keywords,
        authors=interests.authors,
        categories=interests.categories,
        examples=interests.examples,
        timezone=interests.timezone,
        frequency=interests.frequency,
        weekday=interests.weekday,
        deliver_at=interests.deliver_at,
    )


def active_profiles(store: SubscriberStore) -> list[ProfileConfig]:
    """The confirmed, not paused, not unsubscribed web subscribers, as profiles."""
    return [to_profile(s) for s in store.subscribers("active") if not s.unsubscribed]


def with_subscribers(config: Config, store: SubscriberStore) -> Config:
    """The config with the active web subscribers added to its profiles."""
    web = active_profiles(store)
    if not web:
        return config
    configured = {profile.name for profile in config.profiles}
    return replace(config, profiles=config.profiles + tuple(p for p in web if p.name not in configured))


# -- the double opt-in -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignupOutcome:
    """What a subscribe request led to. The page says the same in every case (it must not tell a
    stranger whether an address is subscribed); the mail that goes out differs."""

    subscriber: Subscriber
    mail: str | None  # "confirm" (a new or unconfirmed subscription), "manage" (already active), None
    limited: bool = False  # a mail was due but the rate limit held it back
    # The address had no subscription: this request made it. Only then may the request add to
    # the profile (an imported library); anything else would let a stranger change someone's.
    created: bool = False


def sign_up(
    store: SubscriberStore, address: str, interests: Interests, now: datetime, network: str = ""
) -> SignupOutcome:
    """Record a subscribe request and say which mail to send (the sign-up worker does this,
    after the request was answered).

    A new address gets a pending subscription. An unconfirmed (or unsubscribed) one gets the new
    interests and a fresh confirmation. An active or paused one is left alone, since anyone may
    type any address: its owner gets a mail with their manage link instead. An address that got
    its day's share of these mails gets none.
    """
    existing = store.subscriber_by_address(address)
    created = existing is None
    if existing is not None and existing.status != "pending" and not existing.unsubscribed:
        subscriber, mail = existing, "manage"
    else:
        subscriber = Subscriber(
            profile=existing.profile if existing else new_profile_name(),
            address=address,
            interests=interests,
            status="pending",
            created=existing.created if existing else now,
            updated=now,
            confirmed=existing.confirmed if existing else None,
            unsubscribed=existing.unsubscribed if existing else False,
        )
        store.save_subscriber(subscriber)
        mail = "confirm"
    # Counted and recorded in one step: two web replicas cannot both send the day's last one.
    if store.record_confirmation_mail_within(
        address, now, network, now - timedelta(days=1), CONFIRMATIONS_PER_ADDRESS_PER_DAY
    ):
        return SignupOutcome(subscriber, mail, created=created)
    return SignupOutcome(subscriber, None, limited=True, created=created)


# -- the mail budget -----------------------------------------------------------------------------


def client_network(host: str) -> str:
    """The network a client address belongs to: its IPv4 /24 or IPv6 /48 (one site's share)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # not an IP address (a test client, a Unix socket): itself
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def network_over_budget(store: SubscriberStore, network: str, now: datetime) -> bool:
    """Has `network` asked for its hour's share of mails (sent or still waiting)?"""
    asked = store.signups_waiting(network) + store.confirmation_mails_since(
        now - MAIL_BUDGET_WINDOW, network=network
    )
    return asked >= SIGNUPS_PER_NETWORK_PER_HOUR


def mail_delay(store: SubscriberStore, now: datetime) -> timedelta:
    """About how long a sign-up made now waits for its mail: zero while the hour's budget has
    room for everyone waiting, else a window for each budget's worth queued ahead of it."""
    ahead = store.signups_waiting() + store.confirmation_mails_since(now - MAIL_BUDGET_WINDOW)
    return MAIL_BUDGET_WINDOW * (ahead // CONFIRMATIONS_PER_HOUR)


def next_mail_at(store: SubscriberStore, now: datetime) -> datetime:
    """When the next confirmation mail may go out: now, or when the hour's oldest mail leaves
    the window."""
    window_start = now - MAIL_BUDGET_WINDOW
    if store.confirmation_mails_since(window_start) < CONFIRMATIONS_PER_HOUR:
        return now
    oldest = store.oldest_confirmation_mail_since(window_start)
    return (oldest or now) + MAIL_BUDGET_WINDOW


def confirm(store: SubscriberStore, profile: str, address: str, now: datetime) -> Subscriber | None:
    """Make a pending subscription active (repeating it is harmless); None if it is gone."""
    subscriber = store.subscriber(profile)
    if subscriber is None or subscriber.address != address.lower():
        return None
    if subscriber.unsubscribed:
        store.resubscribe(profile, address)
    if subscriber.status == "pending":
        subscriber = replace(subscriber, status="active", confirmed=now, updated=now, unsubscribed=False)
        store.save_subscriber(subscriber)
    return replace(subscriber, unsubscribed=False)


def update_interests(store: SubscriberStore, subscriber: Subscriber, interests: Interests, now: datetime) -> Subscriber:
    changed = replace(subscriber, interests=interests, updated=now)
    store.save_subscriber(changed)
    return changed


def set_paused(store: SubscriberStore, subscriber: Subscriber, paused: bool, now: datetime) -> Subscriber:
    if subscriber.status == "pending":
        return subscriber  # nothing to pause before it is confirmed
    changed = replace(subscriber, status="paused" if paused else "active", updated=now)
    store.save_subscriber(changed)
    return changed
