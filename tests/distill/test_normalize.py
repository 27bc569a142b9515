"""distill.normalize: HTML sanitised by allow-list, spreadsheet formulas defused, the one role map."""

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from assistant.errors import InputError
from distill.importer import import_file
from distill.normalize import ROLE_MAP, clean_text, is_formula, normalise
from tests.importing import FIXTURES, new_store, stored


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


# What the three role maps that readers and normalize had before there was one accepted (ShareGPT's,
# the CSV reader's, normalize's own): every one of these must still mean the same.
OLD_ROLE_MAPS = {
    "sharegpt": {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                 "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system"},
    "csv": {"customer": "user", "user": "user", "client": "user", "end-user": "user", "end_user": "user",
            "requester": "user", "contact": "user", "visitor": "user", "human": "user", "agent": "assistant",
            "assistant": "assistant", "support": "assistant", "admin": "assistant", "operator": "assistant",
            "staff": "assistant", "bot": "assistant", "system": "system"},
    "normalize": {"user": "user", "customer": "user", "human": "user", "client": "user", "requester": "user",
                  "contact": "user", "end-user": "user", "end_user": "user", "visitor": "user", "lead": "user",
                  "assistant": "assistant", "agent": "assistant", "gpt": "assistant", "bot": "assistant",
                  "admin": "assistant", "support": "assistant", "operator": "assistant", "staff": "assistant",
                  "model": "assistant", "system": "system", "developer": "system"},
}


@pytest.mark.parametrize("source", sorted(OLD_ROLE_MAPS))
def test_every_role_any_old_map_accepted_means_the_same(source):
    for spelled, role in OLD_ROLE_MAPS[source].items():
        assert ROLE_MAP[spelled] == role, (source, spelled)


def test_roles_are_matched_ignoring_case_and_blanks_and_an_unknown_one_is_refused():
    system, out, _ = normalise([{"role": " Customer ", "content": "hi"}, {"role": "BARD", "content": "hello"},
                                {"role": "Developer", "content": "be brief"}])
    assert system == "be brief" and [m["role"] for m in out] == ["user", "assistant"]
    with pytest.raises(InputError, match="message 2 has an unknown role 'wizard'"):
        normalise([{"role": "user", "content": "hi"}, {"role": "wizard", "content": "hello"}])
