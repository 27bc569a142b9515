"""Transcript formats that support teams export, one module per format, and the registry that detects them.

Every format module has
- `read(path, encoding=None, **options)`: streams Parsed / Bad / Note items (see distill.formats.common),
  so one malformed record is reported with its place and never stops the others;
- `sniff(sample)`: does this file look like the format? `sample` (a Sample) gives the path, the
  decoded start of the file and its first JSON record, each read only when a sniff asks for it;
- `DESCRIPTION`: how the error for an unrecognised file names the format;
- `LIST_KEYS` (JSON formats only): the keys under which a JSON object holds the records.

Adding a format = adding one file and one line here: write distill/formats/<name>.py with the above,
import it and put it in VENDORS. VENDORS is the detection order, the first sniff that says yes wins,
so a narrow sniff goes before a broad one (Freshdesk tickets also have a "conversations" list, so
freshdesk is asked before sharegpt). FORMATS, the names the CLI's --format and the UI offer, follows.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Iterator

from assistant.errors import InputError
from distill.encoding import Encoding, forced, sniff_unicode
from distill.formats import csv, freshdesk, hf, intercom, openai, sharegpt, zendesk
from distill.formats.common import Bad, Item, Note, Parsed, decoded_head, iter_json_records
from distill.formats.csv import CsvColumns

__all__ = ["ALIASES", "FORMATS", "VENDORS", "Bad", "CsvColumns", "Item", "Note", "Parsed", "Sample", "detect_format",
           "read"]

# Detection order: path-only sniffs first (a parquet file must not be opened as text), then by suffix,
# then by the first record's fields.
VENDORS = (hf, csv, openai, intercom, zendesk, freshdesk, sharegpt)
FORMATS = tuple(vendor.__name__.rpartition(".")[2] for vendor in VENDORS)
BY_NAME = dict(zip(FORMATS, VENDORS))
ALIASES = {"tsv": ("csv", {"delimiter": "\t"})}  # other names --format accepts: (format, options it implies)

HEAD_BYTES = 8192
DETECT_RECORDS = 20  # records looked at for one that shows the format, past any that do not parse
# where any JSON format keeps its records inside one object, so a sniff sees a record, not the wrapper
LIST_KEYS = tuple(dict.fromkeys(key for vendor in VENDORS for key in getattr(vendor, "LIST_KEYS", ())))


class Sample:
    """What detection shows each format's sniff: the path, the decoded start of the file, its first record.

    Read lazily and once, so a sniff that decides from the path (a dataset folder, a parquet file) never
    opens the file. Reading `head` refuses a binary or an empty file, so no format is guessed for one.
    """

    def __init__(self, path: Path, encoding: Encoding | None = None):
        self.path = path
        self._forced = encoding

    @cached_property
    def _start(self) -> tuple[str, Encoding | None]:
        """(decoded head, its encoding if UTF-16/32 or given; None for UTF-8 or a legacy code page)."""
        if self.path.is_dir():
            return "", self._forced
        with open(self.path, "rb") as fh:
            raw = fh.read(HEAD_BYTES)
        enc = self._forced or sniff_unicode(raw)
        text = decoded_head(self.path, enc, HEAD_BYTES) if enc is not None else raw.decode("utf-8", errors="replace")
        if "\x00" in text:
            raise InputError(f"{self.path.name}: looks like a binary file, not a transcript export; "
                             f"accepted formats: {', '.join(FORMATS)}")
        if len(raw) < HEAD_BYTES and not text.replace("\ufeff", "").strip():
            raise InputError(f"{self.path.name}: the file is empty (no records); nothing imported")
        return text, enc

    @property
    def head(self) -> str:
        """The decoded first 8 KB of the file ("" for a folder)."""
        return self._start[0]

    @cached_property
    def _first(self) -> tuple[object, tuple[str, Exception] | None]:
        """The first record that parses (None if none of the first few do), and the first parse error seen."""
        if self.head.lstrip()[:1] not in ("{", "["):
            return None, None
        error = None
        for n, (where, rec) in enumerate(iter_json_records(self.path, LIST_KEYS, self._start[1])):
            if isinstance(rec, Exception):
                error = error or (where, rec)
            elif not isinstance(rec, Note):
                return rec, error
            if n >= DETECT_RECORDS:
                break
        return None, error

    @property
    def record(self) -> object:
        """The first JSON record that parses (any JSON value), None if the file is not JSON or none parsed."""
        return self._first[0]

    @property
    def error(self) -> tuple[str, Exception] | None:
        """(where, reason) of the first record that did not parse, if any was met before `record`."""
        return self._first[1]


def detect_format(path: Path, encoding: Encoding | None = None) -> str:
    """The first format in FORMATS whose sniff recognises the file; InputError saying why when none does."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    sample = Sample(path, encoding)
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
