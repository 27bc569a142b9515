"""distill.encoding: the text encodings of exports (BOMs, UTF-16 with and without BOM, a named fallback for
legacy CSV, damaged UTF-8), through the importer and on its own."""

import codecs
import json

import pytest

from assistant.errors import InputError
from distill.encoding import choose, sniff_unicode
from distill.importer import import_file
from tests.importing import FIXTURES, all_text, new_store, snapshot, stored


def texts(store):
    return [[m["content"] for m in r["messages"]] for r in stored(store)]


def test_latin1_csv_is_decoded_and_the_summary_names_the_encoding(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "latin1_messages.csv")
    assert s.imported == 2 and not s.rejected
    assert "Windows-1252" in s.encoding and any("Windows-1252" in line for line in s.lines())
    assert texts(store)[0] == ["Mon café est arrivé cassé, où est le reçu ?",
                               "Désolé ! Le remboursement de 12,50 € part aujourd'hui."]
    assert texts(store)[1][0] == "Grüße aus Köln: die Lieferung fehlt"
    assert "\ufffd" not in all_text(store)
    stored_summary = json.loads(store.db["imports"].get(s.import_id)["summary"])
    assert "Windows-1252" in stored_summary["encoding"]


@pytest.mark.parametrize("name, label", [
    ("openai_utf16le_bom.jsonl", "UTF-16 LE (byte-order mark)"),
    ("openai_utf16le_nobom.jsonl", "UTF-16 LE (no byte-order mark"),
    ("messages_utf16be_nobom.csv", "UTF-16 BE (no byte-order mark"),
])
def test_utf16_with_and_without_bom_is_read_not_called_binary(tmp_path, name, label):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / name)
    assert s.imported >= 1 and not s.rejected and s.encoding.startswith(label)
    text = all_text(store)
    assert "\ufffd" not in text and "\x00" not in text
    assert ("Кабель не работает" in text and "😊" in text) if name.endswith(".jsonl") else "25 °C" in text


@pytest.mark.parametrize("codec, bom", [("utf-8", codecs.BOM_UTF8), ("utf-16-be", codecs.BOM_UTF16_BE),
                                        ("utf-32-le", codecs.BOM_UTF32_LE)])
def test_byte_order_marks_of_csv_and_json(tmp_path, codec, bom):
    csv_text = "conversation_id,role,text\nk1,customer,Wo bleibt mein Paket?\nk1,agent,Es kommt morgen.\n"
    (tmp_path / "bom.csv").write_bytes(bom + csv_text.encode(codec))
    record = {"conversations": [{"from": "human", "value": "¿Dónde está?"}, {"from": "gpt", "value": "Mañana."}]}
    (tmp_path / "bom.json").write_bytes(bom + json.dumps([record], ensure_ascii=False).encode(codec))
    store = new_store(tmp_path)
    assert import_file(store, tmp_path / "bom.csv").imported == 1  # the BOM is not part of the first column's name
    s = import_file(store, tmp_path / "bom.json")
    assert s.format == "sharegpt" and s.imported == 1
    assert texts(store) == [["Wo bleibt mein Paket?", "Es kommt morgen."], ["¿Dónde está?", "Mañana."]]


def test_damaged_utf8_csv_rejects_the_conversation_with_its_line_and_stores_no_replacement_chars(tmp_path):
    good = "conversation_id,role,text\nd1,customer,Où est ma commande ?\nd1,agent,Elle arrive demain.\n"
    bad = "d2,customer,Le reçu est faux\nd2,agent,Nous corrigeons.\n"
    (tmp_path / "damaged.csv").write_bytes(good.encode() + bad.encode().replace("ç".encode(), b"\xe7"))
    store = new_store(tmp_path)
    s = import_file(store, tmp_path / "damaged.csv")
    assert s.imported == 1 and "damaged" not in s.encoding and "not valid UTF-8" in s.encoding
    [(where, reason)] = s.rejected
    assert "conversation d2" in where and "line 4" in reason and "UTF-8" in reason
    assert texts(store) == [["Où est ma commande ?", "Elle arrive demain."]]
    assert "\ufffd" not in all_text(store)


def test_json_that_is_not_utf8_is_refused_with_the_line_not_guessed(tmp_path):
    lines = [{"messages": [{"role": "user", "content": f"café {i}"}, {"role": "assistant", "content": "Voilà."}]}
             for i in range(2)]
    (tmp_path / "latin1.jsonl").write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode("latin-1") + b"\n"
                                                     for r in lines))
    store = new_store(tmp_path)
    before = snapshot(store)
    with pytest.raises(InputError, match=r"latin1\.jsonl: line 1: invalid UTF-8 at byte \d+"):
        import_file(store, tmp_path / "latin1.jsonl")  # detection gives the reader's reason
    with pytest.raises(InputError, match=r"latin1\.jsonl: nothing importable.*line 1: invalid UTF-8 at byte \d+"):
        import_file(store, tmp_path / "latin1.jsonl", fmt="openai")
    assert snapshot(store) == before


def test_an_encoding_can_be_forced(tmp_path):
    text = "conversation_id,role,text\nr1,customer,Кабель не работает\nr1,agent,Отправим новый.\n"
    (tmp_path / "cp1251.csv").write_bytes(text.encode("cp1251"))
    store = new_store(tmp_path)
    s = import_file(store, tmp_path / "cp1251.csv", encoding="cp1251")
    assert s.imported == 1 and texts(store) == [["Кабель не работает", "Отправим новый."]]
    with pytest.raises(InputError, match="unknown text encoding 'klingon'"):
        import_file(store, tmp_path / "cp1251.csv", encoding="klingon")


def test_sniffing_rules():
    assert sniff_unicode(b'{"a": 1}') is None  # UTF-8 or a code page: decided on the whole buffer
    assert sniff_unicode("x,y\n".encode("utf-16-le")).codec == "utf-16-le"
    assert sniff_unicode('{"a": "b"}'.encode("utf-32-be")).codec == "utf-32-be"
    assert sniff_unicode(b"\x00\x01\x02\x03" * 50) is None  # binary is not UTF-16
    assert choose("naïve".encode()).is_plain_utf8
    assert choose("naïve".encode("latin-1")).codec == "cp1252"
    assert choose(b"\x81\x8d caf\xe9").codec == "latin-1"  # bytes Windows-1252 leaves undefined
