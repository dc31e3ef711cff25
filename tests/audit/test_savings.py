"""The monthly projection of notebook 03."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from audit.savings import AVERAGE_MONTH, monthly_projection


def test_monthly_projection_scales_waste_and_savings_linearly():
    policies = pd.DataFrame({"policy": ["none", "check", "claim"], "duplicates_prevented": [0, 7, 11],
                             "generations": [56, 49, 45], "wasted_usd": [44.0, 16.0, 0.0]})
    projection = monthly_projection(policies, observed=timedelta(days=8))
    scale = AVERAGE_MONTH / timedelta(days=8)
    assert projection["saved_usd"].tolist() == [0.0, 28.0, 44.0]
    assert projection["wasted_usd_per_month"].tolist() == pytest.approx([44 * scale, 16 * scale, 0.0], abs=0.01)
    assert projection["saved_usd_per_month"].tolist() == pytest.approx([0.0, 28 * scale, 44 * scale], abs=0.01)
    with pytest.raises(ValueError):
        monthly_projection(policies, observed=timedelta(0))
