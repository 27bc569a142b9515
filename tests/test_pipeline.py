"""train -> export -> register -> evaluate -> promote with a tiny model; rollback; the chat picks it up."""

import json
from dataclasses import replace

import pytest

from assistant.services import build_services
from distill import registry
from distill.dataset import build_dataset
from distill.label import LabelOptions, label
from distill.pipeline import train_student
from distill.train import TrainConfig
from tests.conftest import tiny_llama

pytestmark = pytest.mark.slow
TINY = TrainConfig(epochs=1, max_steps=2, batch_size=4, grad_accum=1, max_length=256, lora_r=4, lora_alpha=8, checkpoint_steps=0)


@pytest.fixture
def env(settings, smol_tokenizer, fake_embedder):
    services = build_services(settings, student=None, embedder=fake_embedder)
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
    [row] = registry.versions(services.store)
    assert row["status"] == "candidate" and row["gguf_bytes"] > 0 and not out.promoted


def test_promotion_refuses_a_worse_model_unless_forced_and_rollback_returns(env, settings):
    services, loader = env
    base_student = services.current_student().name
    worse = train_student(services.store, settings, config=TINY, base_loader=loader, evaluate=scores(0.1, 0.3))
    assert not worse.promoted and registry.serving(services.store) is None
    assert registry.versions(services.store)[0]["status"] == "rejected"
    better = train_student(services.store, settings, config=replace(TINY, seed=1), base_loader=loader,
                           evaluate=scores(0.5, 0.3))
    assert better.promoted and registry.serving(services.store)["version"] == better.version
    services._checked_at = 0  # the chat notices the promotion without a restart
    assert services.current_student().name == better.version
    forced = train_student(services.store, settings, config=replace(TINY, seed=2), base_loader=loader,
                           evaluate=scores(0.0, 0.3), force=True)
    assert forced.promoted
    assert registry.rollback(services.store) == better.version
    assert registry.rollback(services.store) == "base"
    services._checked_at = 0
    assert services.current_student().name == base_student
