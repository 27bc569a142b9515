"""What every format reader shares: the items it streams, reading JSON exports record by record, text.

A reader streams `Parsed(where, conversation)` or `Bad(where, reason)` items, one per record, so a
malformed record is reported with its place ("line 12", "ticket 4411") and never stops the others; a
`Note` says something about the whole file (its text encoding when it is not plain UTF-8, see
distill.encoding). `Sample` is what format detection shows each format's `sniff`.
A conversation is `{"messages": [{"role", "content", "timestamp"?}], "metadata": {...}}` with roles as
the source spelled them ("human", "customer", "agent" ...): `distill.normalize.ROLE_MAP`, the one role
map, turns them into user / assistant / system. A reader decides a role only where the export encodes
it in structure (a Zendesk comment by the requester is the user's).
"""

from __future__ import annotations

import codecs
import io
import json
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

from assistant.errors import InputError
from distill.encoding import SAMPLE_BYTES, UTF8, Encoding, sniff_unicode

MAX_RECORD_BYTES = 20 * 1024 * 1024  # one JSON line or record larger than this is refused, not parsed
HEAD_BYTES = 8192  # what detection decodes of a file to look at
DETECT_RECORDS = 20  # records looked at for one that shows the format, past any that do not parse


@dataclass
class Parsed:
    where: str
    conversation: dict


@dataclass
class Bad:
    where: str
    reason: str


@dataclass
class Note:
    """Not a record: something the import summary should say about the whole file (e.g. its encoding)."""

    text: str


Item = Parsed | Bad | Note


def flat_text(value) -> str:
    """A message body as text: None is empty, OpenAI content parts are joined, anything else is str()."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def scalar(value):
    """A metadata value as one plain value: a list or an object where an export should have one value
    (a hand-edited or unusual export) becomes None instead of breaking a lookup."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else None


# ---- text of a file in a known encoding ----------------------------------------------------------

def decoded_head(path: Path, enc: Encoding, size: int = 4096) -> str:
    """The first `size` bytes of a file after its byte-order mark, decoded (undecodable bytes as U+FFFD)."""
    with open(path, "rb") as fh:
        fh.seek(enc.bom)
        raw = fh.read(size)
    return codecs.getincrementaldecoder(enc.codec)(errors="replace").decode(raw)


def _text_lines(path: Path, enc: Encoding) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-16/32 file; a line with bytes the codec cannot decode carries U+FFFD."""
    with open(path, "rb") as raw:
        raw.seek(enc.bom)
        with io.TextIOWrapper(raw, encoding=enc.codec, errors="replace", newline=None) as fh:
            yield from enumerate(fh, 1)


def _lines(path: Path, enc: Encoding, utf8: bool) -> Iterator[tuple[int, bytes | str]]:
    """Numbered lines: bytes for UTF-8 (json decodes them and names a bad byte), text for UTF-16/32."""
    if not utf8:
        yield from _text_lines(path, enc)
        return
    with open(path, "rb") as fh:
        fh.seek(enc.bom)
        for n, line in enumerate(fh, 1):
            yield n, (line[3:] if n == 1 and line.startswith(codecs.BOM_UTF8) else line)


# ---- JSON exports, record by record ---------------------------------------------------------------

def _json_loads(raw: bytes | str, whole: bool = False):
    """One JSON value; a ValueError names the reason and the column (and line, for a whole document)."""
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"record is larger than {MAX_RECORD_BYTES // (1024 * 1024)} MB")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            where = f"line {line}, byte {exc.start}" if whole else f"byte {exc.start}"
            raise ValueError(f"invalid UTF-8 at {where} (JSON must be UTF-8 or UTF-16/32)") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if whole else f"column {exc.colno}"
        raise ValueError(f"invalid JSON at {where}: {exc.msg}") from None


def json_encoding(path: Path, encoding: Encoding | None = None) -> Encoding:
    """JSON is UTF-8 unless a BOM or the zero-byte pattern of UTF-16/32 says otherwise (RFC 8259)."""
    if encoding is not None:
        return encoding
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    return sniff_unicode(head) or UTF8


def _is_jsonl(path: Path, enc: Encoding, head: str) -> bool:
    """One record per line? By the name (.jsonl, .ndjson), else an object on the first line and more after it."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    if head[:1] not in ("[", "{"):
        raise InputError(f"{path.name}: not JSON (starts with {head[:20]!r})")
    if head[:1] == "[":
        return False
    # an object: either a single JSON document with a list inside, or JSONL whose lines are objects
    with closing(_lines(path, enc, enc.codec in ("utf-8", "utf-8-sig"))) as lines:
        first_line = next(lines, (0, b""))[1]
        try:
            json.loads(first_line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return False
        # more than one line holding something: JSONL; the whole document on one line: JSON
        return bool(first_line.strip()) and any(line.strip() for _, line in lines)


def _jsonl_records(path: Path, enc: Encoding) -> Iterator[tuple[str, object]]:
    utf8 = enc.codec in ("utf-8", "utf-8-sig")
    for n, line in _lines(path, enc, utf8):
        if not line.strip():
            continue
        if not utf8 and "\ufffd" in line:
            yield f"line {n}", ValueError(f"bytes that are not valid {enc.label}")
            continue
        try:
            yield f"line {n}", _json_loads(line)
        except ValueError as exc:
            yield f"line {n}", exc


def _document_records(path: Path, enc: Encoding, list_keys: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    """The records of one JSON document: an array, or an object holding one under list_keys (else itself)."""
    raw = path.read_bytes()[enc.bom:]
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        if enc.codec not in ("utf-8", "utf-8-sig"):
            try:
                raw = raw.decode(enc.codec)
            except UnicodeDecodeError as exc:
                raise ValueError(f"invalid {enc.label} at byte {exc.start + enc.bom}") from None
        doc = _json_loads(raw, whole=True)
    except ValueError as exc:
        raise InputError(f"{path.name}: {exc}") from None
    if isinstance(doc, dict):
        doc = next((doc[key] for key in list_keys if isinstance(doc.get(key), list)), [doc])
    if not isinstance(doc, list):
        raise InputError(f"{path.name}: expected a list of records")
    for n, record in enumerate(doc, 1):
        yield f"record {n}", record


def iter_json_records(path: Path, list_keys: tuple[str, ...] = (), encoding: Encoding | None = None
                      ) -> Iterator[tuple[str, object]]:
    """Records of a JSONL file (one per line) or a JSON file (an array, or an object holding one under list_keys).

    A record that cannot be parsed comes back as a ValueError naming the reason; a text encoding other
    than plain UTF-8 is announced first as ("file", Note).
    """
    enc = json_encoding(path, encoding)
    if not enc.is_plain_utf8:
        yield "file", Note(f"encoding: {enc.describe()}")
    if _is_jsonl(path, enc, decoded_head(path, enc).lstrip()):
        yield from _jsonl_records(path, enc)
    else:
        yield from _document_records(path, enc, list_keys)


def read_records(path: Path, list_keys: tuple[str, ...], encoding: Encoding | None,
                 convert: Callable[[str, object], Parsed | Bad]) -> Iterator[Item]:
    """The items of a JSON export: `convert` turns each record that parsed into a Parsed or a Bad."""
    for where, rec in iter_json_records(path, list_keys, encoding):
        if isinstance(rec, Note):
            yield rec
        elif isinstance(rec, Exception):
            yield Bad(where, str(rec))
        else:
            yield convert(where, rec)


# ---- what format detection looks at ---------------------------------------------------------------

class Sample:
    """What detection shows each format's sniff: the path, the decoded start of the file, its first record.

    Read lazily and once, so a sniff that decides from the path (a dataset folder, a parquet file) never
    opens the file. Reading `head` refuses a binary or an empty file, so no format is guessed for one.
    `list_keys`: where JSON exports keep their records inside one object; `accepted`: the format names
    the refusal lists.
    """

    def __init__(self, path: Path, encoding: Encoding | None = None, list_keys: tuple[str, ...] = (),
                 accepted: tuple[str, ...] = ()):
        self.path = path
        self._forced = encoding
        self._list_keys = list_keys
        self._accepted = accepted

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
                             f"accepted formats: {', '.join(self._accepted)}")
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
        for n, (where, rec) in enumerate(iter_json_records(self.path, self._list_keys, self._start[1])):
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
