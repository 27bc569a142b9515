"""Import the help-center knowledge base the teacher is grounded in, as a new version each time.

Takes a folder of Markdown / text / HTML articles (title from the first heading or <title>/<h1>, else
the file name) or a help-center JSON export: Zendesk Guide ({"articles": [{"id", "title", "body" (HTML),
"html_url"}]}) or Intercom articles ({"data": [{"id", "title", "body" (HTML), "url"}]}). Articles are
cleaned to plain text (allow-list sanitised, see distill.normalize; text files may be UTF-8/16/32 or,
said in the result's warnings, Windows-1252), chunked and embedded (so the first chat does not pay for
it), and stored as a new KB version; re-importing identical content creates no new version.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import InputError
from assistant.store import Store, now
from distill.encoding import Encoding, choose, decode, has_undecodable
from distill.normalize import strip_html

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}


@dataclass
class KbImport:
    version: int
    articles: int
    chunks: int
    unchanged: bool
    warnings: list[str] = field(default_factory=list)  # e.g. an article that was not UTF-8 and how it was read


def _clean(text: str) -> str:
    text = strip_html(text)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_text(path: Path, legacy: bool) -> tuple[str, Encoding]:
    """A text file's content in the encoding detected (BOM, UTF-16/32, UTF-8, else a named code page)."""
    data = path.read_bytes()
    enc = choose(data, legacy=legacy)
    if enc.damaged:
        text = data.decode("utf-8", errors="surrogateescape")
        bad = next(i for i, ch in enumerate(text) if has_undecodable(ch))
        raise InputError(f"{path.name}: line {text.count(chr(10), 0, bad) + 1}: bytes that are not valid UTF-8 "
                         "(the rest of the file is); fix or re-save it as UTF-8")
    return decode(data, enc, path.name), enc


def read_file_article(path: Path) -> dict:
    raw, enc = _read_text(path, legacy=True)
    title = None
    if path.suffix.lower() in (".html", ".htm"):
        m = re.search(r"<title[^>]*>(.*?)</title>", raw, re.I | re.S) or re.search(r"<h1[^>]*>(.*?)</h1>", raw, re.I | re.S)
        title = _clean(m.group(1)) if m else None
        raw = re.sub(r"<title[^>]*>.*?</title>", "", raw, flags=re.I | re.S)
        body = _clean(raw)
    else:
        lines = raw.strip().splitlines()
        if lines and lines[0].startswith("#"):
            title, body = lines[0].lstrip("#").strip(), "\n".join(lines[1:]).strip()
        else:
            body = raw.strip()
    title = title or path.stem.replace("-", " ").replace("_", " ").capitalize()
    article = {"source": path.name, "external_id": path.stem, "title": title, "body": body, "url": ""}
    if not enc.is_plain_utf8:
        article["encoding"] = enc.describe()
    return article


def read_json_articles(path: Path) -> list[dict]:
    text, _ = _read_text(path, legacy=False)  # JSON is UTF-8 (or UTF-16/32 with its marks), never a code page
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path.name}: not a readable JSON export: invalid JSON at line {exc.lineno}, "
                         f"column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{path.name}: not a readable JSON export: nested too deeply") from None
    records = doc
    if isinstance(doc, dict):
        records = next((doc[k] for k in ("articles", "data", "items") if isinstance(doc.get(k), list)), None)
    if not isinstance(records, list):
        raise InputError(f"{path.name}: expected a list of articles (Zendesk Guide 'articles' or Intercom 'data')")
    out = []
    for n, a in enumerate(records, 1):
        if not isinstance(a, dict) or not a.get("title") or not isinstance(a.get("body"), str):
            raise InputError(f"{path.name}: article {n} needs a title and a body")
        if a.get("draft") is True or a.get("state") == "draft":
            continue  # unpublished articles are not what customers are told
        out.append({"source": path.name, "external_id": str(a.get("id", n)), "title": _clean(a["title"]),
                    "body": _clean(a["body"]), "url": a.get("html_url") or a.get("url") or ""})
    return out


def read_articles(path: Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        articles = [read_file_article(p) for p in files]
    elif path.suffix.lower() == ".json":
        articles = read_json_articles(path)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        articles = [read_file_article(path)]
    elif not path.exists():
        raise InputError(f"{path}: no such file or folder")
    else:
        raise InputError(f"{path.name}: a KB is a folder of .md/.txt/.html articles or a Zendesk Guide / Intercom JSON export")
    articles = [a for a in articles if a["body"]]
    if not articles:
        raise InputError(f"{path}: no articles with text found")
    return articles


def import_kb(store: Store, path: Path | str, embedder=None) -> KbImport:
    """Store the articles at `path` as a new KB version (unless identical to the latest) and embed their chunks."""
    from assistant.retrieval import KnowledgeBase

    articles = read_articles(Path(path))
    warnings = [f"{a['source']}: encoding {a.pop('encoding')}" for a in articles if "encoding" in a]
    for a in articles:
        a["content_hash"] = hashlib.sha256(f"{a['title']}\n{a['body']}".encode("utf-8")).hexdigest()
    version_hash = hashlib.sha256("".join(sorted(a["content_hash"] for a in articles)).encode()).hexdigest()
    latest = store.kb_version()
    if latest is not None:
        row = store.db["kb_versions"].get(latest)
        if row["content_hash"] == version_hash:
            return KbImport(latest, row["n_articles"], row["n_chunks"] or 0, unchanged=True, warnings=warnings)
    n_chunks = len(KnowledgeBase(articles, embedder).index.items) if embedder is not None else None
    db = store.db
    with store.transaction():
        version = db["kb_versions"].insert({"source": str(path), "n_articles": len(articles), "n_chunks": n_chunks,
                                            "content_hash": version_hash, "created_at": now()}).last_pk
        db["kb_articles"].insert_all({**a, "version": version, "created_at": now()} for a in articles)
    return KbImport(version, len(articles), n_chunks or 0, unchanged=False, warnings=warnings)
