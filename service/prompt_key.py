"""The one definition of "the same prompt".

Both the service's claim and the audit's duplicate detection call `prompt_key`, so the
service never blocks a request the audit would not count as a duplicate, and vice versa.

Two Unicode decisions, each a trade between paying twice and refusing a different request:

- **Invisible format characters (category Cf) become a space** (U+200B zero-width space, U+FEFF
  BOM, U+200D joiner, bidi marks, ...), except the soft hyphen U+00AD, which sits inside a word
  by definition and is dropped. Pasted text carries them where a word break was meant, so
  "hello\\u200bworld" is "hello world"'s duplicate, and a prompt made only of them is empty.
- **NFKC folds width and presentation forms, not meaning.** Full-width "ｃａｔｓ" is "cats" and
  the ligature "ﬁsh" is "fish", but superscripts and subscripts are kept: "10² cats" (a hundred)
  is not "102 cats", and "H₂O" is not "H2O". A false duplicate refuses a user the video they
  asked for; a missed one costs one generation, and these spellings are rare.
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
_SOFT_HYPHEN = "\u00ad"


def _scan_code_points() -> tuple[str, str]:
    """(format characters, superscript/subscript characters) of this Python's Unicode tables.

    Both sets live in planes 0 and 1 plus the tag characters of plane 14; scanning only those
    keeps the import at a few milliseconds instead of walking all 1.1 M code points.
    """
    formats, scripts = [], []
    for point in (*range(0x20000), *range(0xE0000, 0xE0080)):
        char = chr(point)
        if unicodedata.category(char) == "Cf" and char != _SOFT_HYPHEN:
            formats.append(char)
        elif unicodedata.decomposition(char).startswith(("<super>", "<sub>")):
            scripts.append(char)
    return "".join(formats), "".join(scripts)


_FORMAT_CHARS, _SCRIPT_CHARS = _scan_code_points()
_FORMAT_CHAR = re.compile(f"[{re.escape(_FORMAT_CHARS)}]")
# Captured, so `split` keeps the superscripts between the pieces NFKC folds.
_SCRIPT_CHAR = re.compile(f"([{re.escape(_SCRIPT_CHARS)}])")


def _fold_compatibility(text: str) -> str:
    """NFKC, except that superscript and subscript characters stay as they are."""
    if not _SCRIPT_CHAR.search(text):
        return unicodedata.normalize("NFKC", text)
    pieces = _SCRIPT_CHAR.split(text)
    # Odd indexes are the captured superscripts/subscripts.
    return "".join(piece if i % 2 else unicodedata.normalize("NFKC", piece) for i, piece in enumerate(pieces))


def prompt_key(prompt: str) -> str:
    """Normalise a prompt to the key duplicates are matched on.

    NFKC (keeping superscripts and subscripts), format characters to a space (the soft hyphen
    to nothing), casefold, every whitespace run to one space, strip, then strip trailing
    ``.`` ``!`` ``?`` ``…`` and whitespace. May return ``""`` for a prompt with no content.
    """
    text = _fold_compatibility(prompt.replace(_SOFT_HYPHEN, ""))
    text = _FORMAT_CHAR.sub(" ", text).casefold()
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    return _TRAILING_NOISE.sub("", text)
