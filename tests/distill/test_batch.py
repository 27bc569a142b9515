"""Batch API labelling (distill.batch, through distill.label): submit, poll, collect, resume, billed at the discount."""

import threading
from dataclasses import replace

import pytest

from distill.label import LabelOptions, label
from eval.fake_teacher import FakeTeacher
from tests.distill.labelling import backend_for


def test_batch_mode_submits_polls_collects_and_resumes(store, settings, retriever):
    with FakeTeacher() as fake:
        backend = backend_for(fake)
        r = label(store, settings, LabelOptions(source="teacher", batch=True, poll_s=0.01), backend=backend,
                  retriever=retriever)
        assert r.status == "done" and r.progress.called == 12 and len(fake.batches) == 1
        assert fake.calls == 12 and max(fake.per_request.values()) == 1
        assert store.db["label_batches"].get(1)["status"] == "collected"
        again = label(store, settings, LabelOptions(source="teacher", batch=True, poll_s=0.01), backend=backend,
                      retriever=retriever)
        assert again.progress.cached == 12 and len(fake.batches) == 1  # nothing submitted twice


def test_batch_mode_resumes_a_batch_in_flight(store, settings, retriever):
    with FakeTeacher() as fake:
        backend = backend_for(fake)
        stop = threading.Event()
        real_retrieve = backend.client.batches.retrieve

        def interrupted(batch_id):
            stop.set()  # Ctrl-C while the batch is still running
            return real_retrieve(batch_id)

        backend.client.batches.retrieve = interrupted
        r = label(store, settings, LabelOptions(source="teacher", batch=True, poll_s=0.01), backend=backend,
                  retriever=retriever, stop=stop)
        assert r.status.startswith("stopped: batch") and fake.calls == 0
        backend.client.batches.retrieve = real_retrieve
        r = label(store, settings, LabelOptions(source="teacher", batch=True, poll_s=0.01), backend=backend,
                  retriever=retriever)
        assert r.status == "done" and len(fake.batches) == 1 and fake.calls == 12


def test_batch_calls_are_billed_at_the_batch_discount(store, settings, retriever):
    settings = replace(settings, prices={"fake-teacher": (2.0, 4.0)})
    with FakeTeacher() as fake:
        r = label(store, settings, LabelOptions(source="teacher", batch=True, poll_s=0.01), backend=backend_for(fake),
                  retriever=retriever)
    calls = list(store.db.query("select input_tokens, output_tokens, cost from teacher_calls"))
    assert len(calls) == 12 and all(c["input_tokens"] for c in calls)
    for c in calls:
        assert c["cost"] == pytest.approx(0.5 * (c["input_tokens"] * 2.0 + c["output_tokens"] * 4.0) / 1e6)
    assert r.progress.cost == pytest.approx(sum(c["cost"] for c in calls))


def test_a_batch_file_holds_the_parameters_the_model_accepts(store, settings, retriever, tmp_path):
    from distill.backends import make_backend
    from tests.assistant.models.providers import provider_settings

    with FakeTeacher(profile="openai-reasoning") as fake:
        reasoning = replace(provider_settings("openai-reasoning", fake.url, tmp_path), label_budget=0.0)
        r = label(store, reasoning, LabelOptions(source="teacher", batch=True, poll_s=0.01, max_tokens=123),
                  backend=make_backend(reasoning, retriever), retriever=retriever)
    assert r.status == "done" and len(fake.bodies) == 12  # none refused
    assert all(b["max_completion_tokens"] == 123 and "max_tokens" not in b and "temperature" not in b for b in fake.bodies)
    cached = [c["cached_tokens"] for c in store.db.query("select cached_tokens from teacher_calls")]
    assert cached == [64] * 12  # the Batch API's usage lines are read like a live call's


def test_a_batch_over_the_jobs_budget_is_refused_before_it_is_submitted(store, settings, retriever):
    from assistant.errors import InputError

    priced = replace(settings, prices={"fake-teacher": (1000.0, 1000.0)})
    with FakeTeacher() as fake:
        with pytest.raises(InputError, match=r"would cost about \$\d+\.\d\d, over the job's budget \$1\.00"):
            label(store, priced, LabelOptions(source="teacher", batch=True, poll_s=0.01, budget=1.0),
                  backend=backend_for(fake), retriever=retriever)
    assert not fake.batches and store.db["label_jobs"].get(1)["status"].startswith("failed: this batch")
