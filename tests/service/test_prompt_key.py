"""The one definition of "the same prompt"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.prompt_key import prompt_key

BASE = "smart wallets as digital assistants"


@pytest.mark.parametrize(
    "variant",
    ["Smart wallets as digital assistants...", "SMART WALLETS AS DIGITAL ASSISTANTS",
     "smart\twallets  as\n digital assistants", "  smart wallets as digital assistants  ",
     "smart wallets as digital assistants…", "smart wallets as digital assistants!?! ",
     "ｓｍａｒｔ wallets as digital assistants",  # full-width letters: NFKC
     "smart wallets as digital assistants . . ."],
)
def test_variants_share_the_key(variant: str) -> None:
    assert prompt_key(variant) == BASE


@pytest.mark.parametrize(
    "different",
    ["smart wallets as digital accountants", "smart wallets, as digital assistants",
     "¿smart wallets as digital assistants", "smart wallets as digital assistants :)"],
)
def test_other_prompts_keep_their_own_key(different: str) -> None:
    assert prompt_key(different) != BASE


def test_only_trailing_punctuation_is_dropped() -> None:
    assert prompt_key("Wait... what?") == "wait... what"
    assert prompt_key("ß-Straße!") == "ss-strasse"  # casefold, not lower


@pytest.mark.parametrize("empty", ["", "   ", "\t\n", "...", "!?…", " . ! "])
def test_prompts_without_content_have_an_empty_key(empty: str) -> None:
    assert prompt_key(empty) == ""


@given(st.text())
def test_key_is_idempotent_and_tidy(text: str) -> None:
    key = prompt_key(text)
    assert prompt_key(key) == key
    assert key == key.strip() and "  " not in key
    assert not key.endswith((".", "!", "?", "…"))


@pytest.mark.parametrize(
    "variant",
    ["hello\u200bworld", "hello\ufeffworld", "hello\u200dworld", "\ufeffhello world", "hello\u2060world",
     "hello\u200e world\u200f", "hello \u200b world"],
    ids=["zero-width space", "BOM", "zero-width joiner", "leading BOM", "word joiner", "bidi marks", "ZWSP in space"],
)
def test_invisible_format_characters_are_a_word_break(variant: str) -> None:
    assert prompt_key(variant) == "hello world"


def test_the_soft_hyphen_is_dropped_not_a_break() -> None:
    assert prompt_key("co\u00adoperate") == prompt_key("cooperate") == "cooperate"


@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\ufeff", "\u200d", " \u200b\ufeff\u200d ", "\u00ad", "\u2060!"])
def test_a_prompt_of_invisible_characters_only_is_empty(invisible: str) -> None:
    assert prompt_key(invisible) == ""


@pytest.mark.parametrize(("folded", "plain"), [("ｃａｔｓ", "cats"), ("ﬁsh", "fish"), ("Ⅻ cats", "xii cats"),
                                               ("ＣＡＴＳ！", "cats")])
def test_nfkc_folds_width_and_presentation_forms(folded: str, plain: str) -> None:
    assert prompt_key(folded) == plain


@pytest.mark.parametrize(("script", "plain"), [("10² cats", "102 cats"), ("H₂O waves", "H2O waves"),
                                               ("x³ plot", "x3 plot"), ("mᵃ", "ma")])
def test_superscripts_and_subscripts_keep_their_meaning(script: str, plain: str) -> None:
    assert prompt_key(script) != prompt_key(plain)
    assert prompt_key(script.upper() + "!") == prompt_key(script) == script.casefold()
