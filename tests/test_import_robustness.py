"""Bad input never corrupts the store: transactions, strict mode, hostile files, fuzzing."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from assistant.errors import AssistantError, InputError
from distill import importer
from distill.importer import import_file
from tests.importing import FIXTURES, new_store, stored


def test_strict_imports_nothing_when_anything_is_bad(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(InputError, match="nothing imported"):
        import_file(store, FIXTURES / "openai_chat.jsonl", strict=True)
    assert stored(store) == [] and store.db["imports"].count == 0


def test_crash_mid_import_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    import_file(store, FIXTURES / "sharegpt.json")
    before = stored(store)
    real = importer.prepare
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C halfway through
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "prepare", crashing)
    with pytest.raises(KeyboardInterrupt):
        import_file(store, FIXTURES / "openai_chat.jsonl")
    assert stored(store) == before and store.db["imports"].count == 1


def test_binary_unknown_and_missing_files_are_named(tmp_path):
    store = new_store(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InputError, match="binary"):
        import_file(store, tmp_path / "x.bin")
    (tmp_path / "x.json").write_text('[{"foo": 1}]')
    with pytest.raises(InputError, match="could not recognise.*keys foo.*Accepted"):
        import_file(store, tmp_path / "x.json")
    with pytest.raises(InputError, match="no such file"):
        import_file(store, tmp_path / "missing.jsonl")


def test_invalid_utf8_deep_nesting_and_huge_messages(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello " * 5000}]}
    lines = [json.dumps(good).encode(), b'{"messages": "\xff\xfe"}', ("[" * 100000 + "]" * 100000).encode()]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    store = new_store(tmp_path)
    s = import_file(store, tmp_path / "bad.jsonl", fmt="openai")
    assert s.imported == 1 and s.notes["truncated"] == 1
    reasons = dict(s.rejected)
    assert "UTF-8" in reasons["line 2"] and "nested too deeply" in reasons["line 3"]
    assert len(stored(store)[0]["messages"][1]["content"]) < 8100


def test_near_duplicates_are_flagged_across_files(tmp_path):
    base = [{"role": "user", "content": "My thermostat shows offline since the storm yesterday, what should I try first?"},
            {"role": "assistant", "content": "Restart it by holding the button for 20 seconds, then check the Wi-Fi signal is at least two bars in the app."}]
    edited = [dict(base[0]), {"role": "assistant", "content": base[1]["content"] + " Thanks!"}]
    (tmp_path / "a.jsonl").write_text(json.dumps({"messages": base}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"messages": edited}) + "\n")
    store = new_store(tmp_path)
    import_file(store, tmp_path / "a.jsonl")
    s = import_file(store, tmp_path / "b.jsonl")
    assert s.imported == 1 and s.near_duplicates == 1
    first, second = stored(store)
    assert second["near_duplicate_of"] == first["id"] and second["near_duplicate_score"] >= 0.8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                  ["messages", "role", "content", "conversations", "from", "value", "comments", "source",
                                   "conversation_parts", "body", "public", "author_id", "requester_id", "incoming"]), c, max_size=4),
                              max_leaves=20).map(lambda v: json.dumps(v).encode())),
       st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt"]))
def test_no_input_crashes_the_importer_with_anything_but_our_error(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    store = new_store(tmp_path)
    try:
        s = import_file(store, path)
        assert s.imported + s.duplicates + len(s.rejected) == s.read
    except AssistantError:
        pass
