import json

from distill.dataset import build_dataset, load_dataset, split_conversations
from distill.label import LabelOptions, label
from tests.distill.labelling import conv


def test_split_is_by_conversation_deterministic_and_stratified():
    intents = {i: ("a" if i < 50 else "b") for i in range(100)}
    one = split_conversations(intents, seed=1, val_frac=0.1, test_frac=0.2)
    assert one == split_conversations(intents, seed=1, val_frac=0.1, test_frac=0.2)
    assert one != split_conversations(intents, seed=2, val_frac=0.1, test_frac=0.2)
    for intent in "ab":
        tests = [c for c, s in one.items() if s == "test" and intents[c] == intent]
        assert len(tests) == 10  # 20% of each intent


def _labelled(store, settings):
    return label(store, settings, LabelOptions(source="logged")).job_id


def test_dataset_has_no_leakage_and_a_manifest(tmp_path, settings):
    from assistant.store import Store

    store = Store(tmp_path / "a.db")
    store.db["conversations"].insert_all([conv(i, intent=f"intent{i % 4}") for i in range(40)])
    job = _labelled(store, settings)
    v = build_dataset(store, settings, job)
    dd, manifest = load_dataset(store, v.version)
    ids = {s: set(dd[s]["conversation_id"]) for s in ("train", "validation", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"]) and not (ids["validation"] & ids["test"])
    assert sum(len(x) for x in ids.values()) == 40 and len(ids["test"]) > 0
    assert manifest["teacher"] == "human agents (logged replies)" and manifest["split"]["by"] == "conversation"
    assert manifest["counts"]["train"]["rows"] == dd["train"].num_rows
    row = dd["train"][0]
    assert row["train_turns"] == [1, 3] and row["messages"][1]["role"] == "assistant"
    first = json.loads((v.path / "train.openai.jsonl").read_text().splitlines()[0])
    assert first["messages"][1]["weight"] == 1
    assert json.loads((v.path / "test.sharegpt.json").read_text())[0]["conversations"][0]["from"] == "human"


def test_manifest_hash_changes_when_data_changes_and_only_then(tmp_path, settings):
    from assistant.store import Store

    store = Store(tmp_path / "a.db")
    store.db["conversations"].insert_all([conv(i) for i in range(10)])
    a = build_dataset(store, settings, _labelled(store, settings))
    b = build_dataset(store, settings, _labelled(store, settings))  # relabelled, same content
    assert a.version == b.version and not b.created
    assert a.manifest["content_hash"] == b.manifest["content_hash"]
    store.db["conversations"].insert(conv(10))
    c = build_dataset(store, settings, _labelled(store, settings))
    assert c.created and c.manifest["content_hash"] != a.manifest["content_hash"]
    assert store.db["datasets"].count == 2


# ---- jobs that did not label everything build nothing unless asked -------------------------------

def _teacher_job(store, settings, fake_embedder, handler):
    from dataclasses import replace

    from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
    from tests.distill.labelling import mock_backend

    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase(list(store.conversations()), fake_embedder))
    backend, _ = mock_backend(handler)
    return label(store, replace(settings, label_max_retries=0), LabelOptions(source="teacher", concurrency=1),
                 backend=backend, retriever=retriever)


def test_a_job_with_failed_turns_builds_no_dataset_unless_allowed(tmp_path, settings, fake_embedder):
    import pytest

    from assistant.errors import InputError
    from assistant.store import Store
    from tests.distill.test_label import completion

    store = Store(tmp_path / "a.db")
    store.db["conversations"].insert_all([conv(i, intent=f"intent{i % 2}") for i in range(12)])
    job = _teacher_job(store, settings, fake_embedder,
                       lambda request, n: (500, {"error": {"message": "down"}}) if n == 1 else (200, completion("Orders ship in 1 day.")))
    assert job.status == "done with 1 failed turns"
    with pytest.raises(InputError, match="done with 1 failed turns.*allow_failed"):
        build_dataset(store, settings, job.job_id)
    with pytest.raises(InputError, match="no complete labelling job"):
        build_dataset(store, settings)  # the latest complete job: there is none
    assert store.db["datasets"].count == 0
    v = build_dataset(store, settings, job.job_id, allow_failed=True)
    assert v.created and store.db["datasets"].count == 1


def test_a_dataset_with_nothing_to_train_on_is_never_registered(tmp_path, settings, fake_embedder):
    import pytest

    from assistant.errors import InputError
    from assistant.store import Store
    from tests.distill.test_label import completion

    store = Store(tmp_path / "a.db")
    store.db["conversations"].insert_all([conv(i) for i in range(6)])
    job = _teacher_job(store, settings, fake_embedder,
                       lambda request, n: (200, completion("As an AI language model I cannot help with that request.")))
    assert job.status == "done" and job.progress.accepted == 0
    with pytest.raises(InputError, match="no turn to train on.*12 labels rejected"):
        build_dataset(store, settings, job.job_id)
    assert store.db["datasets"].count == 0
    assert not (settings.home / "datasets").exists() or not any((settings.home / "datasets").iterdir())  # nothing half-written


def test_a_small_dataset_saves_its_empty_test_split_readably(tmp_path, settings):
    from assistant.store import Store

    store = Store(tmp_path / "a.db")
    store.db["conversations"].insert_all([conv(i) for i in range(2)])
    v = build_dataset(store, settings, _labelled(store, settings))
    dd, manifest = load_dataset(store, v.version)  # an empty split used to fail here with "list index out of range"
    assert dd["test"].num_rows == 0 and manifest["counts"]["test"]["rows"] == 0 and dd["train"].num_rows == 2


# ---- exports other tools read (#15) ----------------------------------------------------------------------

def test_sharegpt_keeps_the_turn_weights_and_turn_rows_carry_the_students_prompt(tmp_path):
    import json as _json

    from distill.dataset import _export, turn_rows

    row = {"conversation_id": 7, "label_source": "teacher", "system": "Be brief.", "train_turns": [3],
           "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships today."}]}
    _export([row], tmp_path, "train")
    [conv] = _json.loads((tmp_path / "train.sharegpt.json").read_text())
    assert [t.get("weight") for t in conv["conversations"]] == [None, 0, None, 1]  # Axolotl: message_field_training: weight
    seen = []

    def layout(messages, conversation_id):
        seen.append((len(messages), conversation_id))
        return [{"role": m["role"], "content": m["content"].upper()} for m in messages]

    [turn] = turn_rows([row], layout)
    assert seen == [(4, 7)]  # the system message and the conversation up to the labelled reply
    assert turn["prompt"][0] == {"role": "system", "content": "BE BRIEF."} and turn["prompt"][-1]["content"] == "WHERE IS MY ORDER?"
    assert turn["completion"] == [{"role": "assistant", "content": "It ships today."}]
