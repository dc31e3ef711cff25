"""Keys for a whole column (`audit.keys`) are `service.prompt_key.prompt_key` of each value."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.keys import prompt_keys
from service.prompt_key import prompt_key

# Every ASCII character (controls and all Python whitespace included), plus characters NFKC
# or casefold change: the full-width A, the ligature ﬁ, ß, the ellipsis, a no-break space.
alphabet = st.sampled_from([chr(c) for c in range(128)] + ["Ａ", "ﬁ", "ß", "…", "\u00a0", "\u2003", "É"])
texts = st.text(alphabet=alphabet, max_size=12) | st.sampled_from(["Cat video", "  CAT   video!!! ", "a. b.", "x\x1c\x1f?"])


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, max_size=20))
def test_column_keys_equal_the_service_function(prompts):
    got = prompt_keys(pd.Series(prompts, dtype=str))
    assert got.tolist() == [prompt_key(p) for p in prompts]


def test_keys_keep_the_index_and_repeat_per_distinct_prompt():
    prompts = pd.Series(["Smart wallets...", "smart wallets", "Ｓmart wallets!"], index=[10, 20, 30], dtype=str)
    keys = prompt_keys(prompts)
    assert keys.index.tolist() == [10, 20, 30] and set(keys) == {"smart wallets"}
    assert prompt_keys(pd.Series([], dtype=str)).tolist() == []
