"""Bad input never corrupts the store: transactions, strict mode, hostile files, fuzzing."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from assistant.errors import AssistantError, InputError
from assistant.settings import Settings
from assistant.store import Store
from distill import importer
from distill.importer import import_file
from distill.normalize import clean_text, is_formula
from tests.importing import FIXTURES, new_store, snapshot, stored


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


def test_detection_reports_the_real_parse_error(tmp_path):
    store = new_store(tmp_path)
    # every line broken: detection says what --format openai would say, with the line and column
    with pytest.raises(InputError) as detected:
        import_file(store, FIXTURES / "broken.jsonl")
    assert re.search(r"^broken\.jsonl: line 1: invalid JSON at column 122: Expecting ',' delimiter", str(detected.value))
    assert "ValueError" not in str(detected.value)
    with pytest.raises(InputError, match=r"broken\.jsonl: nothing importable, all 2 record\(s\) rejected\. "
                                         r"line 1: invalid JSON at column 122.*line 2: invalid JSON at column 90"):
        import_file(store, FIXTURES / "broken.jsonl", fmt="openai")
    # only the first line broken: the format is found from the next one and line 1 is listed as rejected
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    (tmp_path / "first_bad.jsonl").write_text(FIXTURES.joinpath("broken.jsonl").read_text().splitlines()[0] + "\n" + good + "\n")
    s = import_file(store, tmp_path / "first_bad.jsonl")
    assert s.format == "openai" and s.imported == 1 and s.rejected == [("line 1", "invalid JSON at column 122: Expecting ',' delimiter")]
    # one JSON document: the line and column inside it
    (tmp_path / "doc.json").write_text('[\n  {"messages": []},\n  {"messages": [}\n]')
    with pytest.raises(InputError, match=r"doc\.json: invalid JSON at line 3, column 17: Expecting value"):
        import_file(store, tmp_path / "doc.json")


def test_a_file_with_nothing_importable_is_an_error_and_stores_nothing(tmp_path):
    store = new_store(tmp_path)
    (tmp_path / "no_agents.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hello?"}]}) + "\n")
    with pytest.raises(InputError, match=r"no_agents\.jsonl: nothing importable.*line 1: no assistant message"):
        import_file(store, tmp_path / "no_agents.jsonl")
    assert snapshot(store) == {"conversations": [], "imports": []}


FORBIDDEN = re.compile(r"<\s*/?\s*(script|svg|iframe|img|a|object|embed)\b|\bon[a-z]+\s*=|javascript\s*:|&lt;|&#", re.I)


def test_html_is_sanitised_by_allow_list_everywhere(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "html_injection.jsonl")
    assert s.imported == 1 and s.notes["html_sanitised"] >= 4
    [row] = stored(store)
    raw = json.dumps(row["messages"], ensure_ascii=False) + json.dumps(row["metadata"], ensure_ascii=False)
    assert not FORBIDDEN.search(raw), FORBIDDEN.search(raw)
    assert "alert" not in raw and "evil.example" not in raw and "steal" not in raw and "fallback text" not in raw
    assert [m["content"] for m in row["messages"]] == [
        "Hi, my camera is offline", "Please restart it. Then click here.", "Thanks, x < 5 works",
        "Glad to help! [details]([link removed])"]
    assert row["metadata"]["tags"] == ["camera"]


def test_html_that_hides_behind_entities_or_lookalike_characters_is_still_sanitised():
    assert clean_text("&amp;lt;iframe src=x&amp;gt;&amp;lt;/iframe&amp;gt;ok")[0] == "ok"
    assert clean_text("\uff1cscript\uff1ealert(1)\uff1c/script\uff1eok")[0] == "ok"  # fullwidth < > fold to ASCII
    assert clean_text("&#60;svg onload=alert(1)&#62;&#60;/svg&#62;ok")[0] == "ok"
    assert clean_text("JaVaScRiPt:alert(1) and x < y > z, AT&amp;T")[0] == "[link removed] and x < y > z, AT&T"
    with pytest.raises(InputError, match="nested more than"):
        clean_text("&amp;" * 1 + "amp;" * 10 + "lt;script>")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["<", ">", "/", "script", "svg", "iframe", " onload=", " onerror=", "alert(1)", "&lt;",
                                 "&gt;", "&amp;", "&#60;", "&#x3c;", "\uff1c", "\uff1e", "javascript:", "JAVA", "SCRIPT",
                                 ":", '"', "'", " ", "a href=", "img src=x", "text", "\n", "<!--", "-->", "="]),
                max_size=30).map("".join))
def test_no_markup_survives_sanitising(text):
    try:
        out, _ = clean_text(text)
    except InputError:
        return  # refused, so never stored
    # a tag opens with "<" right before a name ("< script>" is text to a browser)
    assert not re.search(r"</?(script|svg|iframe|img|a)\b|<[a-z][^>]*\bon[a-z]+\s*=|javascript\s*:", out, re.I), out


def test_formulas_are_defused_in_every_csv_column_including_metadata(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "formulas_metadata.csv")
    assert s.imported == 1 and s.notes["formula_defused"] == 4
    [row] = stored(store)
    meta = row["metadata"]
    for key, value in meta.items():
        assert not is_formula(key) and not (isinstance(value, str) and is_formula(value)), (key, value)
    assert meta["subject"].startswith("HYPERLINK(") and meta["priority"].startswith("2+3+cmd|")
    assert meta["score"] == "-5"  # a plain number is not a formula
    for text in ("- step one (optional)", "+1 555 0100", "@dana thanks!", "-5", "x = y"):
        assert not is_formula(text), text
    for text in ("=1+1", "\t=cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|x", "+HYPERLINK(\"x\")",
                 " =A1", "\r-cmd|x"):
        assert is_formula(text) and not is_formula(clean_text(text)[0]), text


BAD_FILES = [
    ("broken.jsonl", r"broken\.jsonl: line 1: invalid JSON at column 122"),
    ("no_agents.jsonl", r"no_agents\.jsonl: nothing importable.*line 1: no assistant message"),
    ("binary.csv", r"binary\.csv: looks like a binary file"),
    ("doc.json", r"doc\.json: invalid JSON at line 2, column 16: Expecting value"),
    ("not_utf8.jsonl", r"not_utf8\.jsonl: line 1: invalid UTF-8 at byte 46"),
]


@pytest.mark.parametrize("name, message", BAD_FILES)
def test_every_bad_file_exits_non_zero_names_place_and_reason_and_stores_nothing(tmp_path, name, message):
    files = {"no_agents.jsonl": json.dumps({"messages": [{"role": "user", "content": "hello?"}]}).encode() + b"\n",
             "binary.csv": b"\x00\x01\x02\xff" * 64, "doc.json": b'[\n  {"messages": ]}',
             "not_utf8.jsonl": b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'}
    path = FIXTURES / name if name not in files else tmp_path / name
    if name in files:
        path.write_bytes(files[name])
    result = CliRunner().invoke(__import__("assistant.cli", fromlist=["app"]).app, ["import", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(message, result.output.replace("\n", " ")), result.output
    db = Store(Settings.from_env().db_path)
    assert snapshot(db) == {"conversations": [], "imports": []}


@pytest.mark.parametrize("name,content", [("empty.jsonl", b""), ("bom.jsonl", b"\xef\xbb\xbf\n"),
                                          ("empty.csv", b""), ("blank.csv", b"\n\n  \n")])
def test_an_empty_file_is_called_empty(tmp_path, name, content):
    store = new_store(tmp_path)
    (tmp_path / name).write_bytes(content)
    for fmt in (None, "csv" if name.endswith(".csv") else "openai"):
        with pytest.raises(InputError, match=f"{name}: (the file is empty|no records found)"):
            import_file(store, tmp_path / name, fmt)
    assert store.count("conversations") == 0
