"""Import help-center articles (the teacher's grounding) into the store.

This first version reads a folder of Markdown / text files, one article each, the title taken from
the first heading (or the file name); the import issue adds HTML and help-center JSON exports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from assistant.errors import InputError

SUFFIXES = {".md", ".markdown", ".txt"}


def read_article(path: Path) -> dict:
    text = path.read_text(encoding="utf-8").strip()
    lines = text.splitlines()
    if lines and lines[0].startswith("#"):
        title, body = lines[0].lstrip("#").strip(), "\n".join(lines[1:]).strip()
    else:
        title, body = path.stem.replace("-", " ").replace("_", " ").capitalize(), text
    return {
        "source": path.name,
        "external_id": path.stem,
        "title": title,
        "body": body,
        "url": "",
        "content_hash": hashlib.sha256(f"{title}\n{body}".encode("utf-8")).hexdigest(),
    }


def import_kb_folder(store, folder: Path | str) -> int:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"KB folder not found: {folder}")
    articles = [read_article(p) for p in sorted(folder.rglob("*")) if p.suffix.lower() in SUFFIXES and p.is_file()]
    if not articles:
        raise InputError(f"no Markdown or text articles ({', '.join(sorted(SUFFIXES))}) in {folder}")
    return store.add_kb_articles(articles)
