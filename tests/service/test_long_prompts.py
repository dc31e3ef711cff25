"""A prompt long in bytes but within the 2,000-character limit is accepted on both backends.

900 CJK characters are 2,700 bytes of UTF-8: past PostgreSQL's b-tree row limit (~2,700 bytes)
when the claim is keyed on the readable prompt key. Keyed on a fixed-size digest of it, the
claim takes any valid prompt.
"""

from __future__ import annotations

from tests.service.app_client import running_app, video_count

# Common CJK ideographs, none repeated in a way that compresses well.
CJK_900 = "".join(chr(0x4E00 + (i * 37) % 20000) for i in range(900))


def test_900_cjk_characters_are_accepted_and_deduplicated(db_url: str) -> None:
    assert len(CJK_900) == 900 and len(CJK_900.encode()) == 2700
    with running_app(db_url, sim_seconds="60") as client:
        first = client.post("/create", json={"tg_user_id": 1, "prompt": CJK_900})
        assert first.status_code == 202, first.text
        again = client.post("/create", json={"tg_user_id": 1, "prompt": CJK_900 + "!"})
        assert again.status_code == 409 and again.json()["video_id"] == first.json()["video_id"]
        assert video_count(client) == 1
