"""distill.formats.hf: a saved Hugging Face dataset folder and a parquet file with a messages column."""

import datasets

from distill.importer import import_file
from tests.importing import new_store, stored

ROWS = {"messages": [[{"role": "user", "content": "is shipping free?"}, {"role": "assistant", "content": "Over $50, yes."}],
                     [{"role": "user", "content": "only me"}]],
        "intent": ["shipping", "other"]}


def test_saved_dataset_folder(tmp_path):
    datasets.Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "ds"))
    store = new_store(tmp_path)
    s = import_file(store, tmp_path / "ds")
    assert s.format == "hf" and s.imported == 1 and len(s.rejected) == 1
    assert stored(store)[0]["intent"] == "shipping"


def test_parquet(tmp_path):
    datasets.Dataset.from_dict(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    store = new_store(tmp_path)
    assert import_file(store, tmp_path / "d.parquet").imported == 1
