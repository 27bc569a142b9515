"""Hugging Face datasets: a folder written by save_to_disk, or a parquet / JSON(L) file, with a messages column.

The column may be called messages, conversations, conversation, dialog or chat; its turns are
{"role", "content"} or ShareGPT's {"from", "value"}. The other scalar and list columns are metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from assistant.errors import InputError
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text

DESCRIPTION = "Hugging Face datasets (folder or parquet)"
MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "dialog", "chat")
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # what save_to_disk leaves in a folder


def sniff(sample: Sample) -> bool:
    """Decided from the path alone: a JSON(L) file of the same rows is read as OpenAI or ShareGPT instead."""
    path = sample.path
    if path.is_dir():
        return any((path / f).exists() for f in SAVED_MARKERS)
    return path.suffix.lower() == ".parquet"


def _load(path: Path):
    import datasets  # heavy: only when a dataset is read

    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = datasets.concatenate_datasets([ds[k] for k in ds])
            return ds
        if path.suffix.lower() == ".parquet":
            return datasets.Dataset.from_parquet(str(path))
        return datasets.Dataset.from_json(str(path))
    except Exception as exc:
        raise InputError(f"{path}: could not read as a Hugging Face dataset: {exc}") from None


def read(path: Path, **_) -> Iterator[Item]:
    ds = _load(path)
    column = next((c for c in MESSAGE_COLUMNS if c in ds.column_names), None)
    if column is None:
        raise InputError(f"{path}: no messages column; columns are {', '.join(ds.column_names)}")
    for n, rec in enumerate(ds, 1):
        turns = rec[column]
        if not isinstance(turns, list):
            yield Bad(f"row {n}", f"{column} is not a list")
            continue
        msgs = [{"role": str(t.get("role") or t.get("from")), "content": flat_text(t.get("content", t.get("value")))}
                for t in turns if isinstance(t, dict) and ("role" in t or "from" in t)]
        meta = {k: v for k, v in rec.items() if k != column and isinstance(v, (str, int, float, bool, list, dict, type(None)))}
        yield Parsed(f"row {n}", {"messages": msgs, "metadata": meta})
