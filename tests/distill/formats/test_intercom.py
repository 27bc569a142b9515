"""distill.formats.intercom: source plus conversation parts; notes dropped, bot and admin both answer."""

from distill.importer import import_file
from tests.importing import FIXTURES, all_text, new_store, stored


def test_intercom(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "intercom_conversations.json")
    assert s.format == "intercom" and s.imported == 1 and len(s.rejected) == 1
    [conv] = stored(store)
    msgs = conv["messages"]
    # the bot's and the admin's parts both answer for the company: merged into one assistant turn
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert "Codes can't be combined." in msgs[1]["content"] and "applied it manually" in msgs[1]["content"]
    text = all_text(store)
    assert "internal" not in text and "<p>" not in text and "Rosa" not in text and "rosa@" not in text
    assert conv["metadata"]["tags"] == ["promo"] and conv["csat"] == 5 and conv["resolution"] == "resolved"
