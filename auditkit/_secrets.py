"""Keeping secrets out of reprs, logs and error messages.

Every text auditkit shows (exception messages, reprs, log records, CLI output) passes
through `redact`, which masks URL passwords, token-only URL user info, secret-looking query
parameters and `key=value` pairs, and the arguments of `AUTH`.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

_SECRET_NAMES = (
    r"password|passwd|pwd|pass|token|secret|api[_-]?key|access[_-]?key|secret[_-]?key"
    r"|auth|credentials?|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
)

# A URL scheme, matched from the start of the run of scheme characters it is in: the
# lookbehind keeps the engine from starting again at every later character of a long run
# (a 100,000-character stream key took minutes), so each pattern is linear in the text.
# Characters before the first letter (`-redis://`) are skipped, one way only.
_SCHEME = r"(?<![\w+.-])(?:[+.\-]|[^\Wa-zA-Z])*[a-zA-Z][\w+.-]*://"
# scheme://user:password@host -> scheme://user:***@host. As URL parsers do, the user info
# ends at the last `@` before the host, so a password with a raw `@` is masked whole.
_URL_USER_PASSWORD = re.compile(rf"(?P<head>{_SCHEME}[^:/\s]*):(?P<secret>[^/\s]*)@")
# scheme://token@host (user info without a colon is often a bare token) -> scheme://***@host
_URL_TOKEN = re.compile(rf"(?P<head>{_SCHEME})(?P<secret>[^:/\s]+)@")
# ?password=x&token=y  and  password='x' / "token": "y" / password=x in reprs and messages
_KEY_VALUE = re.compile(
    rf"""(?P<head>(?<![\w-])(?:{_SECRET_NAMES})(?:['"])?\s*[:=]\s*(?P<quote>['"]?))"""
    r"""(?P<secret>(?(quote)[^'"]*|[^&\s,;)}\]'"]+))""",
    re.IGNORECASE,
)
_AUTH_COMMAND = re.compile(r"\b(?P<head>AUTH)\s+\S+(?:\s+\S+)?", re.IGNORECASE)


def redact(text: str) -> str:
    """Return `text` with passwords, tokens and other secrets replaced by `***`."""
    if not text:
        return text
    text = _URL_USER_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _URL_TOKEN.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _KEY_VALUE.sub(_mask_value, text)
    return _AUTH_COMMAND.sub(lambda m: f"{m['head']} {MASK}", text)


def _mask_value(match: re.Match[str]) -> str:
    if match["secret"] in ("", MASK, "None", "<REDACTED>"):
        return match[0]
    return f"{match['head']}{MASK}"
