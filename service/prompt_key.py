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

Generation parameters (`service.params`) are not part of "the same prompt" unless the operator
names some in `CLAIMFIRST_KEY_PARAMS`: then `key_with_params` appends the canonical JSON of those
present, after a U+001F separator. `prompt_key` never returns that character (Python counts it
as whitespace, so it becomes a space and runs collapse), so a key with params can never equal a
plain prompt key, and a request naming none of them keeps exactly the plain key.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["prompt_key", "key_with_params", "canonical_json", "PARAMS_SEPARATOR"]

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


# Never in a `prompt_key` (str.isspace is true for it: it becomes a space, runs collapse).
PARAMS_SEPARATOR = "\x1f"
# Integers up to this many digits are written out; past it, and for every fraction, the
# normalised decimal's own text (1E+300). Both sides of a comparison get the same form.
_INTEGER_DIGITS = 21


def key_with_params(key: str, params: Mapping[str, Any] | None, names: Collection[str]) -> str:
    """The claim's key: `key` (a `prompt_key`), plus the named params the request carries.

    Exactly `key` when `names` is empty or the request carries none of them, so turning
    `CLAIMFIRST_KEY_PARAMS` on changes no key of a request without those params.
    """
    if not names or not params:
        return key
    chosen = {name: params[name] for name in names if name in params}
    if not chosen:
        return key
    return key + PARAMS_SEPARATOR + canonical_json(chosen)


def canonical_json(value: Any) -> str:
    """One text per JSON value: names sorted, no spaces, text as it is (not ASCII-escaped),
    and numbers by value, so 5, 5.0 and 5e0 are one key; true is not 1, "5" is not 5.

    Numbers by value because the same value comes back in another form from where it was
    stored: PostgreSQL's `jsonb` keeps 5.0 but writes 1e300 out in full, and a client may send
    either. Each number is normalised as a decimal (a float through its shortest repr, which
    `jsonb` keeps exactly), so every reader of a stored value computes the key the service did.
    """
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical_json(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _number(value: int | float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a JSON number: {value}")
    number = (Decimal(repr(value)) if isinstance(value, float) else Decimal(value)).normalize()
    if number == 0:
        return "0"  # -0.0 too
    if number == number.to_integral_value() and number.adjusted() < _INTEGER_DIGITS:
        return str(int(number))
    return str(number)
