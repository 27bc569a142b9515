"""Transcript formats that support teams export, one module per format, and the registry that detects them.

Every format module has
- `read(path, encoding=None, **options)`: streams Parsed / Bad / Note items (see distill.formats.common),
  so one malformed record is reported with its place and never stops the others;
- `sniff(sample)`: does this file look like the format? `sample` (a common.Sample) gives the path,
  the decoded start of the file and its first JSON record, each read only when a sniff asks for it;
- `DESCRIPTION`: how the error for an unrecognised file names the format;
- `LIST_KEYS` (JSON formats only): the keys under which a JSON object holds the records.

Adding a format = adding one file and naming it here: write distill/formats/<name>.py with the above,
then add <name> to the import line below and to VENDORS. VENDORS is the detection order, the first
sniff that says yes wins, so a narrow sniff goes before a broad one (Freshdesk tickets also have a
"conversations" list, so freshdesk is asked before sharegpt). FORMATS, the names the CLI's --format
and the UI offer, follows from VENDORS (the module's name is the format's name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from assistant.errors import InputError
from distill.encoding import Encoding, forced
from distill.formats import csv, freshdesk, hf, intercom, openai, sharegpt, zendesk
from distill.formats.common import DETECT_RECORDS, Bad, Item, Note, Parsed, Sample
from distill.formats.csv import CsvColumns

__all__ = ["ALIASES", "FORMATS", "VENDORS", "Bad", "CsvColumns", "Item", "Note", "Parsed", "Sample", "detect_format",
           "read", "sample_of"]

# Detection order: path-only sniffs first (a parquet file must not be opened as text), then by suffix,
# then by the first record's fields.
VENDORS = (hf, csv, openai, intercom, zendesk, freshdesk, sharegpt)
FORMATS = tuple(vendor.__name__.rpartition(".")[2] for vendor in VENDORS)
BY_NAME = dict(zip(FORMATS, VENDORS))
ALIASES = {"tsv": ("csv", {"delimiter": "\t"})}  # other names --format accepts: (format, options it implies)

# where any JSON format keeps its records inside one object, so a sniff sees a record, not the wrapper
LIST_KEYS = tuple(dict.fromkeys(key for vendor in VENDORS for key in getattr(vendor, "LIST_KEYS", ())))


def sample_of(path: Path, encoding: Encoding | None = None) -> Sample:
    """The Sample each sniff is shown: it looks for records under every JSON format's list keys."""
    return Sample(path, encoding, LIST_KEYS, FORMATS)


def detect_format(path: Path, encoding: Encoding | None = None) -> str:
    """The first format in FORMATS whose sniff recognises the file; InputError saying why when none does."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    sample = sample_of(path, encoding)
    for name, vendor in BY_NAME.items():
        if vendor.sniff(sample):
            return name
    raise _unrecognised(sample)


def _unrecognised(sample: Sample) -> InputError:
    path = sample.path
    if path.is_dir():  # only saved Hugging Face datasets are folders
        return InputError(f"{path}: a folder, but not a saved Hugging Face dataset (no dataset_info.json or "
                          "dataset_dict.json)")
    saw = f"starts with {sample.head[:60]!r}"
    if isinstance(sample.record, dict):
        saw = f"records with keys {', '.join(sorted(map(str, sample.record))[:12])}"
    elif sample.record is not None:
        saw = f"a first record that is a JSON {type(sample.record).__name__}, not an object"
    elif sample.error is not None:
        where, exc = sample.error
        # the real reason, as --format would have reported it, not a guess about the format
        return InputError(f"{path.name}: {where}: {exc}; no record in the first {DETECT_RECORDS} could be read, "
                          "so the format could not be detected")
    accepted = ", ".join(vendor.DESCRIPTION for vendor in VENDORS)
    return InputError(f"{path.name}: could not recognise the format ({saw}). Accepted: {accepted}. "
                      "Use --format to force one.")


def read(path: Path, fmt: str | None = None, encoding: str | None = None, **options) -> tuple[str, Iterator[Item]]:
    """(format, items): the format detected unless given; `encoding` forces a text encoding (else detected)."""
    enc = forced(encoding) if encoding else None
    fmt = fmt or detect_format(path, enc)
    if fmt in ALIASES:
        fmt, implied = ALIASES[fmt]
        options.update(implied)
    if fmt not in BY_NAME:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return fmt, BY_NAME[fmt].read(path, encoding=enc, **options)
