"""The web service's own mails: "confirm your subscription", and "you are already subscribed".

Plain and short, text and HTML, with the one link that matters. They go out through the same sender
as the digests (the Maildir outbox, or SMTP), outside the ledger: each is sent once, when asked for,
and the rate limit in digest.subscriptions bounds how often.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from urllib.parse import urlsplit

from digest.config import Config

_TEXTS = {
    "confirm": (
        "Confirm your paperdigest subscription",
        "Someone, probably you, asked for a paperdigest digest at this address.",
        "Confirm the subscription",
        "Nothing is sent until you confirm; the link works for 7 days. If it was not you, ignore "
        "this email and you will hear nothing more.",
    ),
    "manage": (
        "Your paperdigest subscription",
        "Someone, probably you, asked to subscribe this address, which already gets a paperdigest "
        "digest. Nothing was changed.",
        "Manage your subscription",
        "Change your interests, pause the digest or unsubscribe there. If it was not you, ignore "
        "this email.",
    ),
}


def notice_mail(config: Config, kind: str, address: str, link: str, now: datetime) -> EmailMessage:
    """A confirmation ("confirm") or manage-link ("manage") mail for `address`."""
    subject, opening, action, closing = _TEXTS[kind]
    message = EmailMessage()
    message["From"] = config.email.sender
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=urlsplit(config.output.base_url).hostname or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    if config.email.reply_to:
        message["Reply-To"] = config.email.reply_to
    message.set_content(f"{opening}\n\n{action}:\n{link}\n\n{closing}\n")
    message.add_alternative(
        '<!DOCTYPE html><html lang="en"><body style="margin:0;padding:24px;'
        'font:16px/1.5 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#1f2328">'
        f'<p style="margin:0 0 16px">{escape(opening)}</p>'
        f'<p style="margin:0 0 16px"><a href="{escape(link)}" style="display:inline-block;'
        "background:#0969da;color:#ffffff;padding:10px 18px;border-radius:6px;"
        f'text-decoration:none;font-weight:600">{escape(action)}</a></p>'
        f'<p style="margin:0;color:#57606a;font-size:14px">{escape(closing)}</p>'
        "</body></html>",
        subtype="html",
    )
    return message
