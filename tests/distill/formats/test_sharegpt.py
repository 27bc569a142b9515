"""distill.formats.sharegpt: conversations of from/value turns, a top-level system prompt."""

import json

from distill.formats import sharegpt
from distill.importer import import_file
from tests.importing import FIXTURES, new_store, stored


def test_sharegpt(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "sharegpt.json")
    assert s.format == "sharegpt" and s.imported == 2 and len(s.rejected) == 2
    assert s.pii["EMAIL"] == 1
    convs = stored(store)
    assert convs[0]["messages"][0]["content"].endswith("[EMAIL_1]")
    assert convs[1]["system"] == "Be brief." and len(convs[1]["messages"]) == 4
    assert convs[0]["external_id"] == "sg-1"


def test_from_is_kept_as_spelled_and_every_sharegpt_speaker_imports(tmp_path):
    speakers = ["chatgpt", "bing", "bard", "model", "GPT"]
    records = [{"id": f"s{i}", "conversations": [{"from": "human", "value": f"question {i} about {who}"},
                                                 {"from": who, "value": f"answer {i}"}]}
               for i, who in enumerate(speakers)]
    path = tmp_path / "speakers.json"
    path.write_text(json.dumps(records))
    assert [item.conversation["messages"][1]["role"] for item in sharegpt.read(path)] == speakers
    s = import_file(new_store(tmp_path), path)
    assert s.imported == len(speakers) and not s.rejected
