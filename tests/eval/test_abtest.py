"""Offline A/B on a dataset's test split (eval.abtest)."""

import pytest

from assistant.models import FakeModel


def test_offline_ab_with_fake_models_scores_routes_and_stores(settings, fake_embedder, monkeypatch):
    from assistant.store import open_store
    from distill.dataset import build_dataset
    from distill.label import LabelOptions, label
    from eval.abtest import RetrievalBaseline, load_run, run_eval, EvalConfig
    from assistant.retrieval import CaseBase
    import eval.abtest as abtest
    from tests.distill.test_label import conv

    # the semantic-similarity module would load the real embedder; the fake one is enough here
    monkeypatch.setattr(abtest, "score_items", lambda items: [it.update(rouge_l=0.5, bleu=1.0, semantic_similarity=0.5,
        gold_recall=None, gold_complete=None) for it in items])
    store = open_store(settings)
    store.db["conversations"].insert_all([conv(i, intent=f"i{i % 2}") for i in range(20)])
    job = label(store, settings, LabelOptions(source="logged"))
    build_dataset(store, settings, job.job_id, test_frac=0.3)
    models = {"teacher": FakeModel("teacher", "teacher", replies=["Teacher answer."] * 100),
              "student": FakeModel("student", "student", replies=["I'm sorry, I can't help."] * 100),
              "base": FakeModel("base", "student"), "retrieval": RetrievalBaseline(CaseBase([], fake_embedder))}
    run_id = run_eval(store, settings, EvalConfig(judge="none"), models=models)
    run, items = load_run(store, run_id)
    arms = {it["arm"] for it in items}
    assert arms == {"teacher", "student", "base", "routed", "retrieval"} and run["status"] == "done"
    routed = [it for it in items if it["arm"] == "routed"]
    # an evasive student draft goes to the teacher, and the routed latency includes the wasted draft
    assert all(it["routed_to"] == "teacher" and it["reply"] == "Teacher answer." for it in routed)


def test_evaluation_explains_a_dataset_without_a_test_split(settings, tmp_path):
    from assistant.errors import InputError
    from assistant.models import FakeModel
    from assistant.store import open_store
    from distill.dataset import build_dataset
    from distill.label import LabelOptions, label
    from eval.abtest import EvalConfig, run_eval
    from tests.distill.test_label import conv

    store = open_store(settings)
    store.db["conversations"].insert_all([conv(i) for i in range(2)])  # too few for a test split
    build_dataset(store, settings, label(store, settings, LabelOptions(source="logged")).job_id)
    with pytest.raises(InputError, match="no test split to evaluate on \\(train 2, validation 0, test 0"):
        run_eval(store, settings, EvalConfig(arms=("teacher",)), models={"teacher": FakeModel()})
    assert store.db["eval_runs"].count == 0


def test_the_retrieval_baseline_answers_with_the_nearest_training_reply_made_safe(fake_embedder):
    from assistant.retrieval import CaseBase
    from eval.abtest import RetrievalBaseline

    train = [{"id": 1, "resolution": "resolved", "csat": None, "messages": [
        {"role": "user", "content": "where is order NH-1234567"}, {"role": "assistant", "content": "NH-1234567 ships today."}]}]
    baseline = RetrievalBaseline(CaseBase(train, fake_embedder))
    c = baseline.complete([{"role": "user", "content": "where is order NH-7654321"}])
    assert c.text == "NH-7654321 ships today." and c.output_tokens == 3 and not baseline.generates
    assert RetrievalBaseline(CaseBase([], fake_embedder)).complete([{"role": "user", "content": "hi"}]).text == ""
