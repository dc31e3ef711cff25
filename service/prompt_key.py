"""The one definition of "the same prompt".

Both the service's claim and the audit's duplicate detection call `prompt_key`, so the
service never blocks a request the audit would not count as a duplicate, and vice versa.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["prompt_key"]

_WHITESPACE_RUN = re.compile(r"\s+")
# Trailing sentence punctuation is noise for "the same request": users resend
# "Smart wallets..." as "smart wallets" or "Smart wallets!". "…" is listed although NFKC
# already folds it to "...", so the rule reads as the issue states it.
_TRAILING_NOISE = re.compile(r"[\s.!?…]+$")


def prompt_key(prompt: str) -> str:
    """Normalise a prompt to the key duplicates are matched on.

    NFKC, casefold, every whitespace run to one space, strip, then strip trailing
    ``.`` ``!`` ``?`` ``…`` and whitespace. May return ``""`` for a prompt with no content.
    """
    text = unicodedata.normalize("NFKC", prompt).casefold()
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    return _TRAILING_NOISE.sub("", text)
