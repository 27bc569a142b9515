"""distill.formats (the package's __init__): the registry of formats, detection by each format's sniff, read()."""

import json
import re
from pathlib import Path

import datasets
import pytest

import distill.formats as formats
from assistant.errors import InputError
from distill.formats import FORMATS, VENDORS, detect_format, sample_of
from distill.importer import import_file
from tests.importing import FIXTURES, new_store

TURNS = [{"role": "user", "content": "where is my parcel?"}, {"role": "assistant", "content": "It ships today."}]

# one small export of each format, as written to a file of the given name
SAMPLES = {
    "openai": ("chat.jsonl", json.dumps({"messages": TURNS}) + "\n"),
    "sharegpt": ("sg.json", json.dumps([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}])),
    "hf": ("rows.parquet", None),
    "csv": ("rows.csv", "conversation_id,role,text\nc1,customer,hi\nc1,agent,hello\n"),
    "zendesk": ("zd.json", json.dumps({"tickets": [{"id": 1, "requester_id": 7, "comments": [
        {"author_id": 7, "body": "hi"}, {"author_id": 8, "body": "hello"}]}]})),
    "intercom": ("ic.json", json.dumps({"conversations": [{"type": "conversation", "id": "9",
                                                            "source": {"author": {"type": "user"}, "body": "hi"},
                                                            "conversation_parts": {"conversation_parts": [
                                                                {"author": {"type": "admin"}, "body": "hello"}]}}]})),
    "freshdesk": ("fd.json", json.dumps([{"id": 3, "requester_id": 5, "description_text": "hi",
                                          "conversations": [{"incoming": False, "body_text": "hello"}]}])),
}


def write_sample(tmp_path: Path, fmt: str) -> Path:
    name, text = SAMPLES[fmt]
    path = tmp_path / name
    if fmt == "hf":
        datasets.Dataset.from_dict({"messages": [TURNS]}).to_parquet(str(path))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_formats_lists_every_format_module_once():
    modules = {p.stem for p in Path(formats.__file__).parent.glob("*.py")} - {"__init__", "common"}
    assert sorted(FORMATS) == sorted(modules) and len(set(FORMATS)) == len(FORMATS)
    for vendor in VENDORS:
        assert callable(vendor.read) and callable(vendor.sniff) and vendor.DESCRIPTION, vendor.__name__


def test_there_is_a_sample_for_every_format():
    assert sorted(SAMPLES) == sorted(FORMATS)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_detect_format_picks_each_format_on_a_small_sample(tmp_path, fmt):
    path = write_sample(tmp_path, fmt)
    assert detect_format(path) == fmt
    # and the import reads it as that format, to a stored conversation
    s = import_file(new_store(tmp_path), path)
    assert s.format == fmt and s.read == 1 and s.imported == 1


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_only_its_own_sniff_and_those_after_it_say_yes(tmp_path, fmt):
    """The first sniff that says yes wins: no format asked earlier may claim another format's sample."""
    sample = sample_of(write_sample(tmp_path, fmt))
    earlier = FORMATS[:FORMATS.index(fmt)]
    assert [name for name in earlier if formats.BY_NAME[name].sniff(sample)] == []
    assert formats.BY_NAME[fmt].sniff(sample)


def test_narrow_sniffs_win_over_broad_ones(tmp_path):
    both = tmp_path / "both.json"
    both.write_text(json.dumps([{"messages": TURNS, "comments": [], "conversations": []}]))
    assert detect_format(both) == "openai"
    # a "conversations" list of from/value turns is ShareGPT even beside a Freshdesk field
    sg = tmp_path / "sg.json"
    sg.write_text(json.dumps([{"requester_id": 1, "conversations": [{"from": "human", "value": "hi"}]}]))
    assert detect_format(sg) == "sharegpt"
    empty = tmp_path / "empty_turns.json"
    empty.write_text(json.dumps([{"conversations": []}]))
    assert detect_format(empty) == "sharegpt"


def test_a_path_only_sniff_never_opens_the_file(tmp_path):
    path = write_sample(tmp_path, "hf")
    sample = sample_of(path)
    assert formats.hf.sniff(sample)
    assert "_start" not in vars(sample)  # the parquet bytes were never decoded as text (they hold NULs)


def test_a_folder_that_is_not_a_saved_dataset_is_named(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="a folder, but not a saved Hugging Face dataset"):
        detect_format(tmp_path / "plain")


def test_read_takes_tsv_as_csv_with_tabs_and_refuses_an_unknown_format(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("conversation_id\trole\ttext\nc1\tcustomer\thi\nc1\tagent\thello\n")
    fmt, items = formats.read(path, "tsv")
    [item] = list(items)
    assert fmt == "csv" and [m["content"] for m in item.conversation["messages"]] == ["hi", "hello"]
    with pytest.raises(InputError, match=r"unknown format 'yaml'; choose one of hf, csv, openai"):
        formats.read(path, "yaml")


def test_the_unrecognised_message_names_every_format(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('[{"foo": 1}]')
    with pytest.raises(InputError) as err:
        detect_format(path)
    for vendor in VENDORS:
        assert vendor.DESCRIPTION in str(err.value)


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


@pytest.mark.parametrize("name,content", [("empty.jsonl", b""), ("bom.jsonl", b"\xef\xbb\xbf\n"),
                                          ("empty.csv", b""), ("blank.csv", b"\n\n  \n")])
def test_an_empty_file_is_called_empty(tmp_path, name, content):
    store = new_store(tmp_path)
    (tmp_path / name).write_bytes(content)
    for fmt in (None, "csv" if name.endswith(".csv") else "openai"):
        with pytest.raises(InputError, match=f"{name}: (the file is empty|no records found)"):
            import_file(store, tmp_path / name, fmt)
    assert store.count("conversations") == 0
