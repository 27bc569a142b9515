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
