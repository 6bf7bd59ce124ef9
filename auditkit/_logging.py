"""auditkit's loggers: every record passes through `redact` before a handler sees it."""

from __future__ import annotations

import logging

from auditkit._secrets import redact

__all__ = ["logger"]


def logger(name: str) -> logging.Logger:
    """The logger for an auditkit module, with secret redaction attached."""
    log = logging.getLogger(name)
    if not any(isinstance(f, _RedactingFilter) for f in log.filters):
        log.addFilter(_RedactingFilter())
    return log


class _RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        return True
