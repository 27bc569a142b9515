"""distill.formats.openai: chat JSONL with messages and metadata, through a whole import."""

from distill.importer import import_file
from tests.importing import FIXTURES, all_text, new_store, stored


def test_openai_jsonl(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "openai_chat.jsonl")
    assert s.format == "openai" and s.read == 5 and s.imported == 2
    reasons = dict(s.rejected)
    assert "invalid JSON" in reasons["line 2"]
    assert "no assistant message" in reasons["line 3"]
    assert "messages" in reasons["line 4"]
    first, second = stored(store)
    assert first["system"] == "You are Acme support."
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant"]
    assert "Dana" not in all_text(store) and "[NAME_1]" in first["messages"][0]["content"]
    assert "AC-55120" in first["messages"][1]["content"]  # order numbers are not PII
    assert first["intent"] == "order_status" and first["csat"] == 5 and first["resolution"] == "resolved"
    assert first["metadata"]["tags"] == ["shipping"] and first["metadata"]["source_file"] == "openai_chat.jsonl"
    # consecutive user messages merged, HTML stripped, CSAT 9 on a 10 scale -> 4.5
    assert second["messages"][0]["content"] == "Can I pay by PayPal?\n\nalso Apple Pay?"
    assert second["messages"][1]["content"] == "Yes, both.\n\nSee billing settings."
    assert second["csat"] == 4.5
