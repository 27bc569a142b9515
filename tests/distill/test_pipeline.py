"""train -> export -> register -> evaluate -> promote with a tiny model; rollback; the chat picks it up."""

import json
from dataclasses import replace

import pytest

from distill.sample import open_services
from assistant import students
from distill import registry
from distill.dataset import build_dataset
from distill.label import LabelOptions, label
from distill.pipeline import train_student
from distill.train import TrainConfig
from tests.conftest import tiny_llama

pytestmark = pytest.mark.slow
TINY = TrainConfig(epochs=1, max_steps=2, batch_tokens=1024, grad_accum=1, max_length=256, lora_r=4, lora_alpha=8, checkpoint_steps=0,
                   retrieval_augmented=False)


@pytest.fixture
def env(settings, smol_tokenizer, fake_embedder):
    services = open_services(settings, student=None, embedder=fake_embedder)
    job = label(services.store, settings, LabelOptions(source="logged", limit=30))
    build_dataset(services.store, settings, job.job_id)
    loader = lambda base: (tiny_llama(len(smol_tokenizer)), smol_tokenizer)
    return services, loader


def scores(candidate, serving):
    return lambda c, s, rows, limit: {"metric": "fake", "candidate_score": candidate, "serving_score": serving,
                                      "candidate": c.name, "serving": s.name, "turns": 1}


def test_registered_version_has_a_complete_manifest(env, settings):
    services, loader = env
    out = train_student(services.store, settings, config=TINY, base_loader=loader, promote=False)
    manifest = json.loads((out.gguf_path.parent / "manifest.json").read_text())
    assert manifest["dataset"]["version"].startswith("ds-") and manifest["dataset"]["content_hash"]
    assert manifest["base"]["sha256"] and manifest["config"]["max_steps"] == 2
    assert {"torch", "transformers", "peft", "gguf"} <= set(manifest["libraries"])
    assert manifest["metrics"]["steps"] == 2 and "git_commit" in manifest
    assert (out.gguf_path.parent / "adapter" / "adapter_config.json").exists()
    [row] = students.versions(services.store)
    assert row["status"] == "candidate" and row["gguf_bytes"] > 0 and not out.promoted


def test_promotion_refuses_a_worse_model_unless_forced_and_rollback_returns(env, settings):
    services, loader = env
    base_student = services.current_student().name
    worse = train_student(services.store, settings, config=TINY, base_loader=loader, evaluate=scores(0.1, 0.3))
    assert not worse.promoted and students.serving(services.store) is None
    assert students.versions(services.store)[0]["status"] == "rejected"
    better = train_student(services.store, settings, config=replace(TINY, seed=1), base_loader=loader,
                           evaluate=scores(0.5, 0.3))
    assert better.promoted and students.serving(services.store)["version"] == better.version
    services._checked_at = 0  # the chat notices the promotion without a restart
    assert services.current_student().name == better.version
    forced = train_student(services.store, settings, config=replace(TINY, seed=2), base_loader=loader,
                           evaluate=scores(0.0, 0.3), force=True)
    assert forced.promoted
    assert registry.rollback(services.store) == better.version
    assert registry.rollback(services.store) == "base"
    services._checked_at = 0
    assert services.current_student().name == base_student


def test_retrieval_augmented_version_trains_on_held_out_grounding_and_serves_with_it(env, settings, monkeypatch):
    import distill.pipeline as pipeline
    from assistant.errors import ModelError
    from assistant.grounding import DEFAULT_BUDGET, FIRST_BUDGET
    from assistant.models import GroundedStudent
    from distill.dataset import load_dataset

    services, loader = env
    excluded = []
    real = pipeline.grounding_for_training

    def spy(retriever, rows_by_split):
        excluded.append(retriever.exclude)
        return real(retriever, rows_by_split)

    monkeypatch.setattr(pipeline, "grounding_for_training", spy)
    out = train_student(services.store, settings, config=replace(TINY, retrieval_augmented=True), base_loader=loader,
                        evaluate=scores(0.5, 0.3), retriever=services.retriever)
    dd, _ = load_dataset(services.store)
    held = {r["conversation_id"] for split in ("validation", "test") for r in dd[split]}
    assert held and excluded == [frozenset(held)]  # validation and test conversations never ground training
    assert out.promoted and "retrieval-augmented" in registry.describe(students.serving(services.store))
    services._checked_at = 0
    student = services.current_student()
    assert isinstance(student, GroundedStudent) and student.version == out.version
    assert student.budget == DEFAULT_BUDGET  # served the grounding it was trained with, as recorded
    row = students.serving(services.store)
    assert students.student_for(dict(row, config=json.dumps({"retrieval_augmented": True})), settings,
                                services.retriever).budget == FIRST_BUDGET  # recorded before budgets were
    assert student.retriever is services.retriever
    services.reload_retrieval()  # after an import: the grounded student retrieves from the new data at once
    assert student.retriever is services.retriever and services.teacher.retriever is services.retriever
    with pytest.raises(ModelError, match="retrieval-augmented"):
        students.serving_student(services.store, settings)  # it cannot be served without its retrieval


def test_adapter_only_version_is_registered_but_never_served(env, settings):
    from pathlib import Path

    from assistant.errors import InputError

    services, loader = env
    out = train_student(services.store, settings, config=TINY, base_loader=loader, gguf_type="none")
    assert out.gguf_path is None and not out.promoted and out.evaluation == {}
    [row] = students.versions(services.store)
    assert row["gguf_path"] is None and (Path(row["path"]) / "adapter" / "adapter_config.json").exists()
    assert json.loads((Path(row["path"]) / "manifest.json").read_text())["gguf"] is None
    with pytest.raises(InputError, match="no GGUF"):
        registry.promote(services.store, out.version, "try")
    assert "adapter only" in registry.describe(row) and " plain " in registry.describe(row)


def test_what_cannot_be_exported_or_run_here_is_refused_before_training(env, settings, tmp_path):
    from assistant.errors import InputError

    services, _ = env
    loads = []
    hub_base = replace(settings, student_base=str(tmp_path / "some-hf-model-folder"))
    with pytest.raises(InputError, match="needs a GGUF base.*--export-type none"):
        train_student(services.store, hub_base, config=TINY, base_loader=loads.append)
    with pytest.raises(InputError, match="unknown export type"):
        train_student(services.store, settings, config=TINY, base_loader=loads.append, gguf_type="q2_k")
    with pytest.raises(InputError, match="unknown loss 'token_kl'; known losses: cross_entropy"):
        train_student(services.store, settings, config=replace(TINY, loss="token_kl"), base_loader=loads.append)
    with pytest.raises(InputError, match="QLoRA needs a CUDA GPU"):  # this machine has no GPU
        train_student(services.store, settings, config=replace(TINY, load_in_4bit=True), base_loader=loads.append)
    assert loads == [] and students.versions(services.store) == []
