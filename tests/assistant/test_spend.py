"""The daily teacher spend: summed from what the store records, per UTC day, shared by chat and jobs."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from assistant import spend
from assistant.store import open_store


@pytest.fixture
def store(settings):
    return open_store(settings)


def at(day_offset: int = 0, hour: int = 12) -> str:
    t = datetime.now(timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=day_offset)
    return t.isoformat(timespec="milliseconds")


def test_spent_today_sums_teacher_replies_label_calls_and_shadows_of_this_utc_day_only(store):
    db = store.db
    db["exchanges"].insert_all([
        {"routed_to": "teacher", "cost": 0.25, "created_at": at()},
        {"routed_to": "student", "cost": 9.0, "created_at": at()},  # the student's compute is not teacher spend
        {"routed_to": "teacher", "cost": None, "created_at": at()},  # unknown price: nothing to count
        {"routed_to": "teacher", "cost": 7.0, "created_at": at(-1, 23)},  # yesterday
    ])
    db["teacher_calls"].insert_all([{"cache_key": "a", "cost": 0.5, "created_at": at(hour=0)},
                                    {"cache_key": "b", "cost": 3.0, "created_at": at(-1)}])
    exchange = db["exchanges"].insert({"routed_to": "student", "cost": 0.0, "created_at": at()}).last_pk
    db["shadow_answers"].insert({"exchange_id": exchange, "cost": 0.125, "created_at": at(hour=23)})
    assert spend.spent_today(store) == pytest.approx(0.875)
    assert spend.spent_today(store, at=datetime.now(timezone.utc) - timedelta(days=1)) == pytest.approx(10.0)


def test_day_bounds_are_utc_and_compare_with_the_stores_timestamps():
    from assistant.store import now

    start, end = spend.day_bounds()
    assert start <= now() < end and start.endswith("T00:00:00.000+00:00")


def test_the_cap_and_when_it_is_reached(store, settings):
    assert spend.cap(replace(settings, teacher_daily_budget=0)) is None  # 0 = no cap
    capped = replace(settings, teacher_daily_budget=1.0)
    spend._recent.clear()
    assert not spend.budget_reached(store, capped)
    store.db["teacher_calls"].insert({"cache_key": "a", "cost": 1.0, "created_at": at()})
    assert not spend.budget_reached(store, capped)  # read less than a second ago: the chat's cache
    assert spend.budget_reached(store, capped, max_age_s=0)
    assert not spend.budget_reached(store, replace(settings, teacher_daily_budget=0))
    spend._recent.clear()


def test_a_long_job_counts_its_own_spend_between_reads(store, settings):
    budget = spend.DailyBudget(store, replace(settings, teacher_daily_budget=1.0), refresh_s=3600)
    assert not budget.reached()
    budget.add(0.6)
    store.db["teacher_calls"].insert({"cache_key": "other", "cost": 0.6, "created_at": at()})  # the chat, say
    assert budget.spent() == pytest.approx(0.6) and not budget.reached()  # not re-read yet
    budget.add(0.5)
    assert budget.reached()
    budget.refresh_s = 0
    assert budget.spent() == pytest.approx(0.6)  # re-read: the store is the record (this job's calls are in it)
