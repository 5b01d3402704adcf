"""Delivery channels: where a composed Digest goes, each kind in a module of its own.

The package is where delivery is heading (see ARCHITECTURE.md): a Channel protocol and a registry
of kinds, as digest/sources/__init__.py has SOURCE_KINDS, with mail.py (outbox, SMTP), feed.py
(RSS/Atom files) and chat.py. So far it holds only:

  chat.py   pure builders of the message a team chat takes for a digest: a Slack incoming
            webhook (Block Kit), a Discord webhook (embeds), a Matrix room message (plain body and
            HTML) and a generic JSON webhook. They are sent with digest.fetch.Fetcher.post; they
            are not yet channels in the delivery ledger (digest/deliver.py does mail and feeds).
"""
