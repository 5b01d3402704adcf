"""Every error paperdigest raises on purpose, under one root.

DigestError                  anything the tool reports to a person instead of a traceback
├── ConfigError              config.toml is missing, unreadable or wrong (file, key, what was expected)
├── SourceError              one source could not be read; the run goes on with the others
│   ├── FetchError           the HTTP (or file) side: timeout, refused, 5xx, too large
│   │   └── NotReplayed      a replayed run asked for a URL its captures do not hold
│   ├── ParseError           the bytes are not what the source's format promises
│   └── LayoutChanged        the page parsed but holds none of the markers we rely on
├── StoreError               the SQLite store cannot be opened or written
├── EmbeddingError           the sentence model is missing or damaged; ranking goes on lexically
├── LibraryError             a reference-manager export (BibTeX, RIS, CSL-JSON) cannot be read
└── DeliveryError            a digest could not be handed over (outbox not writable, SMTP refused)
    ├── TransientDeliveryError   worth trying again later: 4xx, connection lost, timeout before
    │   │                        the message was handed over (it provably did not go)
    │   └── UnreachableError     the server could not be reached at all (a circuit breaker counts it)
    ├── PermanentDeliveryError   never retried: 5xx, a bounced address
    └── UncertainDeliveryError   the message was handed over but no answer came (a timeout after
                                 SMTP's end-of-data): it may have arrived; not retried in the run
"""

from __future__ import annotations


class DigestError(Exception):
    """Root of every error the tool raises on purpose; its message is meant for a person."""


class ConfigError(DigestError):
    """A mistake in the configuration, reported as `file: key: what was expected`."""


class SourceError(DigestError):
    """A source could not be fetched or understood."""


class FetchError(SourceError):
    """The request failed: network error, timeout, bad status, body too large."""


class NotReplayed(FetchError):
    """A run replaying captured responses asked for a URL the captures do not hold."""


class ParseError(SourceError):
    """The response is not in the format the source promises (truncated, HTML instead of a feed...)."""


class LayoutChanged(ParseError):
    """The page parsed, but none of the markers the parser relies on is there any more."""


class StoreError(DigestError):
    """The store cannot be opened, migrated or written."""


class EmbeddingError(DigestError):
    """The sentence-embedding model cannot be loaded or run; the ranking falls back to words."""


class LibraryError(DigestError):
    """A reference-manager export cannot be read at all (one bad entry is skipped, not this)."""


class DeliveryError(DigestError):
    """A digest could not be delivered; the ledger records it and the run goes on with the others."""


class TransientDeliveryError(DeliveryError):
    """Try again later: the server said 4xx, or the connection failed."""


class UnreachableError(TransientDeliveryError):
    """The server could not be reached, or stopped answering before the message was handed over:
    the message did not go, and every message would likely fail alike (a circuit breaker counts
    these; they are never the recipient's fault)."""


class PermanentDeliveryError(DeliveryError):
    """Do not try again: the server said 5xx (the address bounced, the message was refused)."""


class UncertainDeliveryError(DeliveryError):
    """The whole message was handed over, then the answer never came: it may well have arrived.

    Sending it again could give the reader a second copy, so the ledger records 'uncertain' and
    only a later run, after a quarantine, tries again (digest status shows it to a person).
    """
