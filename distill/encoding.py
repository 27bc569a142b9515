"""Which text encoding an export file is in, and decoding it without storing garbage.

Support exports arrive as UTF-8 (with or without a byte-order mark), as UTF-16 from Windows tools
(Excel's "Unicode text", PowerShell redirection; sometimes without a BOM) and as Windows-1252 / Latin-1
CSV from older spreadsheets. The rules, in order:

1. a byte-order mark decides (UTF-32 LE/BE, UTF-8, UTF-16 LE/BE);
2. no BOM but zero bytes in the places UTF-16 / UTF-32 put them for ASCII text (the field names and
   punctuation every export has): that encoding, if the sample then decodes cleanly;
3. valid UTF-8: UTF-8;
4. otherwise, for formats that may legitimately be in a legacy code page (CSV/TSV, KB text files):
   some valid multi-byte UTF-8 and a few bad bytes is *damaged UTF-8* (the records holding the bad
   bytes are rejected with their place, never stored with U+FFFD); no valid UTF-8 beyond ASCII is a
   single-byte code page: Windows-1252 (a superset of Latin-1's printable characters), or Latin-1 when a byte is
   undefined in Windows-1252. Whatever was chosen is named in the import summary.

JSON is UTF-8 by its specification (RFC 8259), so JSON readers use rules 1-2 and otherwise report
invalid UTF-8 per record instead of guessing a code page.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

SAMPLE_BYTES = 64 * 1024
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes surrogateescape could not decode

# UTF-32-LE's BOM begins with UTF-16-LE's, so the longer marks are tried first.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)
_LABELS = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE", "utf-32-le": "UTF-32 LE",
           "utf-32-be": "UTF-32 BE", "cp1252": "Windows-1252", "latin-1": "Latin-1 (ISO-8859-1)"}


@dataclass(frozen=True)
class Encoding:
    codec: str  # a Python codec name
    bom: int = 0  # bytes of byte-order mark to skip
    how: str = ""  # how it was decided, for the summary ("" for plain UTF-8)
    damaged: bool = False  # UTF-8 with some undecodable bytes: decoded with surrogateescape, callers reject them

    @property
    def label(self) -> str:
        return _LABELS.get(self.codec, self.codec)

    @property
    def is_plain_utf8(self) -> bool:
        return self.codec == "utf-8" and not self.how

    def describe(self) -> str:
        return f"{self.label} ({self.how})" if self.how else self.label


UTF8 = Encoding("utf-8")


def _share_zero(b: bytes) -> float:
    return b.count(0) / len(b) if b else 0.0


def sniff_unicode(head: bytes) -> Encoding | None:
    """BOM, or UTF-16/32 recognised from where its zero bytes fall; None: UTF-8 or a legacy code page."""
    for bom, codec, label in _BOMS:
        if head.startswith(bom):
            return Encoding(codec, len(bom), "byte-order mark" if codec != "utf-8" else "with byte-order mark")
    if b"\x00" not in head or len(head) < 4:
        return None
    candidates = []
    n4 = len(head) - len(head) % 4
    if n4 >= 4:
        lanes = [head[i:n4:4] for i in range(4)]
        if _share_zero(lanes[2]) > 0.9 and _share_zero(lanes[3]) > 0.9 and _share_zero(lanes[0]) < 0.5:
            candidates.append("utf-32-le")
        if _share_zero(lanes[0]) > 0.9 and _share_zero(lanes[1]) > 0.9 and _share_zero(lanes[3]) < 0.5:
            candidates.append("utf-32-be")
    n2 = len(head) - len(head) % 2
    even, odd = head[0:n2:2], head[1:n2:2]
    # ASCII characters put a zero in the high byte: every other byte, on the odd side for little-endian
    if _share_zero(odd) > 0.3 and _share_zero(even) < 0.05:
        candidates.append("utf-16-le")
    if _share_zero(even) > 0.3 and _share_zero(odd) < 0.05:
        candidates.append("utf-16-be")
    for codec in candidates:
        unit = 4 if codec.startswith("utf-32") else 2
        sample = head[: len(head) - len(head) % unit]
        try:
            text = codecs.getincrementaldecoder(codec)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r")
        if text and controls <= len(text) // 100:  # text, not binary that happens to have zeros in step
            return Encoding(codec, 0, "no byte-order mark; recognised from its zero bytes")
    return None


def _utf8_damage(raw: bytes) -> tuple[int, int]:
    """(undecodable bytes, characters decoded from valid multi-byte UTF-8) of a buffer that is not valid UTF-8."""
    text = raw.decode("utf-8", errors="surrogateescape")
    bad = len(_ESCAPED.findall(text))
    good = len(re.findall("[^\x00-\x7f\udc80-\udcff]", text))
    return bad, good


def choose(raw: bytes, legacy: bool = True) -> Encoding:
    """The encoding of a whole buffer (see the module docstring for the rules)."""
    found = sniff_unicode(raw[:SAMPLE_BYTES])
    if found is not None:
        return found
    try:
        raw.decode("utf-8")
        return UTF8
    except UnicodeDecodeError:
        pass
    if not legacy:
        return UTF8  # the caller reports the invalid bytes where they are
    bad, good = _utf8_damage(raw)
    # Valid multi-byte UTF-8 almost never happens by chance in a code-page file ("Ã©" is what it looks like),
    # so a file with some of it is UTF-8 with damage, unless the bad bytes far outnumber it.
    if good and good * 4 >= bad:
        return Encoding("utf-8", 0, f"{bad} byte(s) are not valid UTF-8; the records holding them are rejected", damaged=True)
    try:
        raw.decode("cp1252")
        return Encoding("cp1252", 0, "the file is not UTF-8; decoded as the Windows/Excel Western code page, check accented letters")
    except UnicodeDecodeError:
        return Encoding("latin-1", 0, "the file is not UTF-8 nor Windows-1252; decoded as Latin-1, check accented letters")


def decode(raw: bytes, encoding: Encoding, name: str) -> str:
    """Decode a whole buffer with `encoding`; a damaged UTF-8 buffer keeps its bad bytes as lone surrogates."""
    from assistant.errors import InputError

    body = raw[encoding.bom:]
    if encoding.damaged:
        return body.decode("utf-8", errors="surrogateescape")
    try:
        return body.decode(encoding.codec)
    except UnicodeDecodeError as exc:
        start = exc.start + encoding.bom
        line = raw.count(b"\n", 0, start) + 1 if encoding.codec in ("utf-8", "cp1252", "latin-1") else None
        where = f"line {line}, byte {start}" if line else f"byte {start}"
        raise InputError(f"{name}: {where}: invalid {encoding.label} ({exc.reason}); re-save the file in one encoding") from None


def has_undecodable(text: str) -> bool:
    """True when `text` holds bytes that were not valid UTF-8 (kept as lone surrogates by surrogateescape)."""
    return _ESCAPED.search(text) is not None


def forced(codec: str) -> Encoding:
    """An encoding the user named (e.g. `encoding="cp1251"`); an unknown name is an InputError."""
    from assistant.errors import InputError

    try:
        name = codecs.lookup(codec).name
    except LookupError:
        raise InputError(f"unknown text encoding {codec!r} (e.g. utf-8, utf-16, cp1252, latin-1)") from None
    if name == "utf-8":
        name = "utf-8-sig"  # a BOM the user did not mention is still not text
    return Encoding(name, 0, "as requested")
