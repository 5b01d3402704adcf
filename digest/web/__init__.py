"""`digest serve`: the HTTP side, on the same config and store as the job (Starlette on uvicorn).

One module per page group, each handler a function of (Site, request); digest.web.site.Site holds
what they share (config, clock, keys, templates, the store handle, the sign-up worker):

    feeds.py        GET  /feeds/, /feeds/...   the index page; the files, with 304s (digest.feedfiles)
    personal.py     the personal feeds: reads recorded (once a minute), built when asked
    subscribe.py    GET  / , /subscribe        the form; POST queues a sign-up (signups.py mails it)
                    GET  /confirm/TOKEN        what will be confirmed; POST is the double opt-in
    manage.py       GET  /manage/TOKEN         interests, pause, feed; POST saves, pauses, resumes
                    (the subscribe and manage forms may carry a library file: BibTeX, RIS or
                    CSL-JSON, whose papers count as liked)
    feedback.py     GET  /feedback/TOKEN       "more like this?"; POST records it (or undoes it)
    unsubscribe.py  GET  /unsubscribe/TOKEN    a confirm button; POST is RFC 8058's one-click
    links.py        GET, POST /l/CODE          a text email's short link: answered as its long path
    app.py          create_app: the routes, the 404/405 pages, the middleware (middleware.py)
    forms.py        reading a POSTed body: size caps, multipart, the library file

Why every change is a POST behind a GET page: mail scanners and link previews open every link in a
message, so a GET must never subscribe, mark or unsubscribe anything.

Security, in one place:
  - Tokens in links are HMAC-signed (digest.tokens), one purpose each; a bad one gets 400.
  - Forms carry a CSRF token bound to a cookie nonce and to the form's scope, and a cross-site
    Origin is refused. The one-click unsubscribe POST is the exception RFC 8058 asks for: it needs
    no cookie, its signed token is the authority.
  - A form is read up to a size cap, and answered 413 beyond it: 64 kB of text; the subscribe
    and manage forms (multipart/form-data) add one library file of up to 2 MB.
  - A sign-up does the same work and says the same words whatever the address: the form is
    checked and queued, and the sign-up worker (signups.py) sends the mail, so neither the page
    nor its timing tells whether an address is subscribed.
  - Subscribe requests are rate limited per client address; confirmation mails per recipient
    (a day), per client network (an hour) and overall (an hour, shared fairly between networks;
    past it mails wait and the page says how long).
  - A library file sent with the subscribe form is imported only into a subscription that form
    creates: a stranger who types a subscribed address changes nothing.
  - Nothing redirects: every POST answers with its page, so there is no redirect to abuse.
  - Pages are autoescaped templates, under a CSP that allows one inline script by its hash (the
    subscribe form's time-zone preselect, pages.zone_script) and no other.
  - Store calls run in one thread holding one store handle (site.StoreThread), never on the
    event loop; uvicorn closes idle keep-alive connections and slow request heads (digest.cli).
"""

from digest.web.app import create_app
from digest.web.site import SUBSCRIBES_PER_CLIENT

__all__ = ["SUBSCRIBES_PER_CLIENT", "create_app"]
