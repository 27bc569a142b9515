"""distill.formats.common: JSON exports read record by record (JSONL or one document), text of a message body."""

import codecs
import json

from distill.formats.common import Note, flat_text, iter_json_records
from distill.importer import import_file
from tests.importing import new_store, stored


def records(path, list_keys=()):
    return [(where, rec if not isinstance(rec, Exception) else f"error: {rec}")
            for where, rec in iter_json_records(path, list_keys)]


def test_jsonl_or_one_document_is_told_by_the_content_not_only_the_name(tmp_path):
    lines = tmp_path / "lines.json"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    assert records(lines) == [("line 1", {"a": 1}), ("line 2", {"a": 2})]
    one = tmp_path / "one.json"
    one.write_text('{"tickets": [{"a": 1}, {"a": 2}]}')
    assert records(one, ("tickets",)) == [("record 1", {"a": 1}), ("record 2", {"a": 2})]
    assert records(one) == [("record 1", {"tickets": [{"a": 1}, {"a": 2}]})]  # no list key: the object is the record
    spread = tmp_path / "spread.json"
    spread.write_text('{\n  "data": [{"a": 1}]\n}\n')
    assert records(spread, ("data",)) == [("record 1", {"a": 1})]


def test_a_bad_line_is_reported_in_place_and_the_encoding_is_announced_first(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(codecs.BOM_UTF16_LE + '{"a": 1}\n{"a": \n'.encode("utf-16-le"))
    got = list(iter_json_records(path))
    assert got[0] == ("file", Note("encoding: UTF-16 LE (byte-order mark)"))
    assert got[1] == ("line 1", {"a": 1})
    assert got[2][0] == "line 2" and "invalid JSON" in str(got[2][1])


def test_flat_text_joins_content_parts():
    assert flat_text(None) == "" and flat_text(3) == "3"
    assert flat_text([{"type": "text", "text": "a"}, {"type": "image_url"}, "b"]) == "a\n\nb"


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
