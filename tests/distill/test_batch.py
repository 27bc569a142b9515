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
