"""One redaction for everything the service and the audit write: log records, error lines,
`summary.json`, the report.

- `redact_url(url)`: a URL with its user-info password and its secret query parameters
  (`password`, `sslpassword`, `token`: libpq's and most APIs' names) masked. SQLAlchemy's
  `hide_password` masks only the user-info: `postgresql:///db?host=…&password=…` printed its
  password (issue 18).
- `redact_text(text)`: the same rule for every URL and `password=…` pair inside free text (an
  exception's message, a libpq conninfo), for text whose URLs nobody parsed.
- `Redactor(secrets)`: `redact_text` plus known secret values (the API keys, the provider and
  bot tokens, the database password, from `service.logs.secrets_of`), longest first so a secret
  that contains another is masked whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["redact_url", "redact_text", "Redactor", "MASK", "REDACTED", "SECRET_PARAMETERS"]

MASK = "***"  # what SQLAlchemy's hide_password writes
REDACTED = "[redacted]"  # a known secret value, wherever it appears
SECRET_PARAMETERS = ("password", "sslpassword", "token")

# scheme://user:password@ — the authority's user-info up to its last "@" (a password may hold
# an unescaped "@"; the host may not).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s:@]*):[^/?#\s]*@")
# password=… in a query string or a conninfo (`host=db password=…`), quoted or not.
_PARAMETER = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:" + "|".join(SECRET_PARAMETERS) + r")\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;#'\"<>]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """`text` with every URL's password and every secret parameter's value masked."""
    if "=" not in text and "@" not in text:
        return text  # the common log line: nothing to look at
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PARAMETER.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_url(url: str) -> str:
    """A URL safe to print: its user-info password and secret query parameters masked."""
    return redact_text(url)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return redact_text(text)
