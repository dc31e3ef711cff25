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
