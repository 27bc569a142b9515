"""distill.formats.csv: one row per message grouped into conversations; columns found by name or mapped."""

import pytest

from assistant.errors import InputError
from distill.importer import import_file
from tests.importing import FIXTURES, new_store, stored


def test_csv_rows_become_conversations(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "messages.csv")
    assert s.format == "csv" and s.imported == 1
    reasons = dict(s.rejected)
    assert any("empty conversation_id" in r for r in reasons.values())  # the orphan row
    assert any("no assistant" in r for r in reasons.values())  # t2 has only a customer message
    [conv] = stored(store)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user"]
    assert conv["messages"][0]["content"].endswith("call [PHONE_1]")
    agent = conv["messages"][1]["content"]
    assert not agent.startswith("=") and s.notes["formula_defused"] == 1
    assert conv["metadata"]["channel"] == "chat" and conv["metadata"]["first_message_at"] == "2026-01-01T10:00"


def test_tsv_with_mapped_columns(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(InputError, match="no column for conversation id"):
        import_file(store, FIXTURES / "messages.tsv")
    s = import_file(store, FIXTURES / "messages.tsv", csv_columns={"conversation": "thread", "role": "who", "text": "body"})
    assert s.imported == 1 and stored(store)[0]["messages"][1]["content"] == "It ships today."
