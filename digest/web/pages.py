"""Small things several page groups share: binding a handler to the Site, and the words that
describe a subscription."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from digest import subscriptions
from digest.config import ProfileConfig
from digest.models import Interests, Subscriber
from digest.tokens import manage_token
from digest.web.site import Site

Handler = Callable[[Site, Request], Awaitable[Response]]


@functools.cache
def zone_script() -> str:
    """The one script a page runs: it preselects the browser's time zone on the blank subscribe
    form. Allowed by its hash in the Content-Security-Policy (middleware.SecureHeaders); without
    script the form works the same, with UTC selected."""
    aliases = json.dumps(subscriptions.zone_aliases(), separators=(",", ":"))
    return (
        "(function(){var a=" + aliases + ";"
        "var z;try{z=Intl.DateTimeFormat().resolvedOptions().timeZone}catch(e){return}"
        "z=a[z]||z;var s=document.getElementById('timezone');"
        "if(!s||!z)return;for(var i=0;i<s.options.length;i++)"
        "{if(s.options[i].value===z){s.value=z;return}}})();"
    )


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


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
