"""distill.formats.freshdesk: tickets with conversations; private notes dropped, body_text preferred."""

from distill.importer import import_file
from tests.importing import FIXTURES, all_text, new_store, stored


def test_freshdesk(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "freshdesk_tickets.json")
    assert s.format == "freshdesk" and s.imported == 1 and len(s.rejected) == 1
    [conv] = stored(store)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user"]
    assert conv["messages"][1]["content"] == "Hi [NAME_1], use Forgot password."  # body_text preferred
    text = all_text(store)
    assert "private" not in text and "Omar" not in text and "omar@" not in text
    assert conv["metadata"]["channel"] == "chat" and conv["resolution"] == "resolved"


def test_a_list_where_one_value_belongs_is_dropped_not_a_crash(tmp_path):
    import json

    ticket = json.loads((FIXTURES / "freshdesk_tickets.json").read_text())[0]
    ticket.update(status=[4], source={"id": 7})
    (tmp_path / "odd.json").write_text(json.dumps([ticket]))
    store = new_store(tmp_path)
    assert import_file(store, tmp_path / "odd.json", "freshdesk").imported == 1
    [conv] = stored(store)
    assert conv["metadata"]["channel"] is None and not conv["resolution"]
