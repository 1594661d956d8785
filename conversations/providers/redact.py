"""Secrets never leave the provider boundary: one redaction for every string a vendor sends.

Vendors sometimes quote the credential they refused ("Invalid key in header 'Bearer sk-…'") in an
error body, an in-stream error event or a redirect's Location. `Redactor` is applied by
`Provider.run`/`Provider.delete` (base.py) to everything a provider yields or raises, so no
vendor string reaches an event, a stored row, a frame or an exception message unredacted.
`install_log_redaction` is the second line of defence: every log record is redacted when it is
made, whatever logger or handler it goes to.

Plain Python (no Django): providers and logging configuration both import it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from conversations.events import RunFailed

REDACTED = "[redacted]"
# Names an agent's token may live in (see AGENT_TOKEN_ENV_PATTERN in settings): upper-case,
# ending in _API_KEY, _TOKEN, _KEY or _SECRET. The log redactor hides the values of every such
# variable, so it needs no database to know the agents' tokens.
DEFAULT_TOKEN_ENV_PATTERN = r"[A-Z][A-Z0-9_]*_(?:API_KEY|TOKEN|KEY|SECRET)"  # noqa: S105
# Values shorter than this are not treated as secrets: redacting "1" or "yes" everywhere would
# garble logs and vendors' messages, and no real API token is that short.
MIN_SECRET_CHARS = 8

# "Bearer <anything up to a quote or space>", an Authorization header echo, and query-string
# credentials (?api_key=…, &token=…) in URLs a vendor redirects to.
_ECHOES = (
    (re.compile(r"(?i)\b(bearer)\s+[^\s'\"`,;)\]}]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b((?:proxy-)?authorization)(\s*[:=]\s*)(?!bearer\s)[^\r\n'\"`]+"),
     r"\1\2" + REDACTED),
    (re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|token|key|secret)=)[^&\s'\"]+"),
     r"\1" + REDACTED),
)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _ECHOES:
        text = pattern.sub(replacement, text)
    return text


class Redactor:
    """Redacts one agent's token (and any credential echo) from vendor strings."""

    __slots__ = ("secrets",)

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first: a token that contains another is replaced whole.
        self.secrets = tuple(sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True))

    def text(self, value: str) -> str:
        """Error text: the token values and every Bearer/Authorization/?key= echo."""
        return _scrub(value, self.secrets) if value else value

    def value(self, value: Any) -> Any:
        """`text` applied to every string in a JSON-like value (error details)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value

    def content(self, value: str) -> str:
        """Reply text: only the token values. Content may legitimately explain "Authorization:
        Bearer <token>", so the echo patterns are for errors only."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def event(self, event: Any) -> Any:
        """An event with its vendor strings redacted (the same object when nothing changes)."""
        if not self.secrets and not _is_failure(event):
            return event
        if _is_failure(event):
            return dataclasses.replace(
                event, message=self.text(event.message), details=self.value(event.details))
        changes = {}
        for f in dataclasses.fields(event):
            current = getattr(event, f.name)
            cleaned = self._content_value(current)
            if cleaned is not current:
                changes[f.name] = cleaned
        return dataclasses.replace(event, **changes) if changes else event

    def _content_value(self, value: Any) -> Any:
        if isinstance(value, str):
            cleaned = self.content(value)
            return value if cleaned == value else cleaned
        if isinstance(value, dict | list | tuple):
            return _rebuild(value, self._content_value)
        return value


def _rebuild(value: Any, clean: Any) -> Any:
    if isinstance(value, dict):
        items = {k: clean(v) for k, v in value.items()}
        same = all(items[k] is value[k] for k in value)
        return value if same else items
    items = [clean(v) for v in value]
    same = all(a is b for a, b in zip(items, value, strict=True))
    return value if same else type(value)(items)


def _is_failure(event: Any) -> bool:
    return isinstance(event, RunFailed)


# Logging ------------------------------------------------------------------------------------


def env_secrets(pattern: str | None = None) -> list[str]:
    """Values of the environment variables that may hold an agent's token."""
    regex = re.compile(pattern or os.environ.get("AGENT_TOKEN_ENV_PATTERN")
                       or DEFAULT_TOKEN_ENV_PATTERN)
    return [value for name, value in os.environ.items()
            if len(value) >= MIN_SECRET_CHARS and regex.fullmatch(name)]


def redact_log_text(text: str) -> str:
    return _scrub(text, sorted(env_secrets(), key=len, reverse=True))


_installed = False


def install_log_redaction() -> None:
    """Redact every log record as it is made (message, arguments and traceback text), so no
    handler — console, file, a test's capture — ever sees a token. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return record
        cleaned = redact_log_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[0] is not None:
            # Formatted now, so the traceback text (exception messages included) is redacted;
            # formatters reuse exc_text instead of formatting again.
            record.exc_text = redact_log_text(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


class RedactingFilter(logging.Filter):
    """The same redaction as a filter, for handlers configured outside `configure_logging`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact_log_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def configure_logging(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: Django's dictConfig, then record-level redaction."""
    import logging.config

    if config:
        logging.config.dictConfig(config)
    install_log_redaction()
