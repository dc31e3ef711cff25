"""Near-duplicates: the same user asking for almost the same prompt within the window.

"A red sports car…" then "A blue sports car…" is a different request to the service (a
different prompt key) but may be what the user meant as a resend. These pairs are listed for a
human to judge, never counted as duplicates or as waste: the claim cannot and should not block
them, and the audit must agree with the claim.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from audit.detect import DEFAULT_WINDOW

__all__ = ["DEFAULT_SIMILARITY", "near_duplicates"]

# rapidfuzz's normalised Indel similarity, 0-100. At 90 a one-word change in a sentence of
# ten words or more is near; a new subject in a short prompt is not.
DEFAULT_SIMILARITY = 90.0


def near_duplicates(
    videos: pd.DataFrame, *, window: timedelta = DEFAULT_WINDOW, threshold: float = DEFAULT_SIMILARITY
) -> pd.DataFrame:
    """``video_id, earlier_id, tg_user_id, prompt, earlier_prompt, similarity, gap_seconds``:
    each pair (earlier video, later video) of one user within ``window`` whose prompt keys
    differ but score ``>= threshold``. Failed videos are included: the point is what users
    resend, and a human reads this list.

    Quadratic in the number of videos one user makes within one window, which is small.
    """
    from rapidfuzz.fuzz import ratio  # here: run_audit's every caller imports this module, few ask for this

    rows = []
    limit = pd.Timedelta(window)
    for _, user in videos.sort_values(["created_at", "id"]).groupby("tg_user_id", sort=True):
        keys = user["prompt_key"].to_list()
        times = user["created_at"].to_list()
        ids = user["id"].to_list()
        prompts = user["prompt"].to_list()
        for j in range(len(user)):
            for i in range(j - 1, -1, -1):
                gap = times[j] - times[i]
                if gap > limit:
                    break
                if keys[i] == keys[j]:
                    continue
                score = ratio(keys[i], keys[j])
                if score >= threshold:
                    rows.append(
                        {
                            "video_id": ids[j],
                            "earlier_id": ids[i],
                            "tg_user_id": user["tg_user_id"].iloc[0],
                            "prompt": prompts[j],
                            "earlier_prompt": prompts[i],
                            "similarity": round(score, 1),
                            "gap_seconds": gap.total_seconds(),
                        }
                    )
    columns = ["video_id", "earlier_id", "tg_user_id", "prompt", "earlier_prompt", "similarity", "gap_seconds"]
    return pd.DataFrame(rows, columns=columns)
