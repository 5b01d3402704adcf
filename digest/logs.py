"""One line per event, as text for people or as JSON for log collectors, with who it concerns.

Every record carries the run id, and the source or profile it is about when there is one: set
once per step with `context(...)`, not repeated in every call. Secrets never reach a log line:
the SMTP password is only ever read into the connection (see deliver.py).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

RUN_ID: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="")
SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("source", default="")
PROFILE: contextvars.ContextVar[str] = contextvars.ContextVar("profile", default="")
_FIELDS = {"run_id": RUN_ID, "source": SOURCE, "profile": PROFILE}
LOG_FORMATS = ("text", "json")


@contextmanager
def context(**values: str) -> Iterator[None]:
    """Within this block, every log record says run_id=, source= or profile= as given."""
    tokens = [(_FIELDS[name], _FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in _FIELDS.items():
            if not getattr(record, name, ""):
                setattr(record, name, variable.get())
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        about = " ".join(
            f"{name}={getattr(record, name)}" for name in _FIELDS if getattr(record, name, "")
        )
        line = f"{when} {record.levelname} {record.name}: {record.getMessage()}"
        if about:
            line += f" [{about}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        event.update({name: getattr(record, name) for name in _FIELDS if getattr(record, name, "")})
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)  # escaped: still one line
        return json.dumps(event, ensure_ascii=False)


def setup(format_name: str = "text", level: int = logging.WARNING) -> None:
    """Send every log record to stderr, one line each, in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format_name == "json" else TextFormatter())
    handler.addFilter(_Context())
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER:  # ours from an earlier call; others (pytest's) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # bibtexparser warns about every broken block in several lines; `digest profile import`
    # lists each skipped entry in one line instead.
    logging.getLogger("bibtexparser").setLevel(logging.ERROR)
    # Libraries' own chatter ("HTTP Request: GET ... 200 OK", even for a replayed response;
    # "Adding job tentatively" per job) is for debugging: our own lines say what happened.
    for chatty in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


_HANDLER = "paperdigest"
