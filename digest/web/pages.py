"""Small things several page groups share: binding a handler to the Site, and the words that
describe a subscription."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from digest.config import ProfileConfig
from digest.models import Interests, Subscriber
from digest.tokens import manage_token
from digest.web.site import Site

Handler = Callable[[Site, Request], Awaitable[Response]]


def bind(site: Site, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`handler(site, request)` as the `endpoint(request)` a Starlette route calls."""

    async def endpoint(request: Request) -> Response:
        return await handler(site, request)

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    return endpoint


def manage_link(keys: list[str], subscriber: Subscriber) -> str:
    return f"/manage/{manage_token(keys, subscriber.profile, subscriber.address)}"


def when(interests: Interests) -> str:
    days = {"daily": "every day", "weekdays": "on weekdays",
            "weekly": f"every {interests.weekday.title()}"}[interests.frequency]
    return f"{days} at {interests.deliver_at} ({interests.timezone.replace('_', ' ')})"


def describe(interests: Interests) -> str:
    parts = [
        f"{label}: {', '.join(values)}"
        for label, values in (
            ("keywords", interests.keywords),
            ("authors", interests.authors),
            ("categories", interests.categories),
            ("papers like", interests.examples),
        )
        if values
    ]
    return f"Interests: {'; '.join(parts)}. Delivered {when(interests)}."


def summary(profile: ProfileConfig) -> list[tuple[str, str]]:
    """A config.toml profile's interests, as the manage page lists them (read only)."""
    rows = [
        ("Keywords", ", ".join(profile.keywords)),
        ("Authors", ", ".join(profile.authors)),
        ("Categories", ", ".join(profile.categories)),
        ("Papers like", ", ".join(profile.examples)),
        ("When", f"{profile.frequency} at {profile.deliver_at} ({profile.timezone})"),
    ]
    return [(label, value) for label, value in rows if value]
