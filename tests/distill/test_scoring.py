"""Gold-fact matching and recall (distill.scoring)."""

import pytest

from distill.scoring import fact_present, gold_fact_recall


@pytest.mark.parametrize("reply, fact, present", [
    ("Returns are accepted within 30 days of delivery.", "30 days", True),
    ("Returns are accepted within 3 days.", "30 days", False),
    ("It takes 5–7 business days.", "5-7 business days", True),
    ("It takes 5 to 7 business days.", "5-7 business days", True),
    ("Deleted clips cannot be recovered.", "can't be recovered", True),
    ("Go to **Account > Billing > Payment method**.", "Account > Billing > Payment method", True),
    ("Pro costs $19.99 a month", "$19.99", True),
    ("Pro costs $19.9 a month", "$19.99", False),
    ("keeps 62°F and 80°F", "62°F and 80°F", True),
])
def test_gold_fact_matching(reply, fact, present):
    assert fact_present(reply, fact) is present


def test_gold_fact_recall_counts_each_fact():
    assert gold_fact_recall("30 days, prepaid label", ["30 days", "prepaid label", "1 business day"]) == pytest.approx(2 / 3)
    assert gold_fact_recall("anything", []) is None
