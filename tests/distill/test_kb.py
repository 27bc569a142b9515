"""distill.kb: knowledge-base articles from folders and help-centre exports, versioned, in any text encoding."""

import codecs
import json

import pytest

from assistant.errors import InputError
from assistant.retrieval import build_retriever
from distill.kb import import_kb
from tests.importing import new_store


def test_folder_of_markdown_and_html_is_versioned(tmp_path, fake_embedder):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "returns.md").write_text("# Returns\n\nReturn within 30 days for a full refund.")
    (kb / "hours.html").write_text("<html><title>Support hours</title><body><p>Chat is open <b>24/7</b>.</p></body></html>")
    store = new_store(tmp_path)
    first = import_kb(store, kb, fake_embedder)
    assert (first.version, first.articles, first.chunks, first.unchanged) == (1, 2, 2, False)
    titles = {a["title"]: a["body"] for a in store.kb_articles()}
    assert titles["Support hours"] == "Chat is open 24/7."
    assert import_kb(store, kb, fake_embedder).unchanged  # same content: no new version
    (kb / "returns.md").write_text("# Returns\n\nReturn within 45 days for a full refund.")
    second = import_kb(store, kb, fake_embedder)
    assert second.version == 2 and not second.unchanged
    assert "45 days" in " ".join(a["body"] for a in store.kb_articles())
    assert "30 days" in " ".join(a["body"] for a in store.kb_articles(version=1))
    hits = build_retriever(store, fake_embedder).kb.search("return within days refund")
    assert "45 days" in hits[0].item["text"]


def test_zendesk_guide_and_intercom_exports(tmp_path, fake_embedder):
    zd = {"articles": [{"id": 1, "title": "Refunds", "body": "<p>Refunds take <b>5-7 days</b>.</p>", "html_url": "https://help.example/1"},
                       {"id": 2, "title": "Draft", "body": "<p>wip</p>", "draft": True}]}
    ic = {"type": "list", "data": [{"id": "9", "title": "Shipping", "body": "<p>Free over $50.</p>", "url": "https://help.example/9", "state": "published"}]}
    (tmp_path / "zd.json").write_text(json.dumps(zd))
    (tmp_path / "ic.json").write_text(json.dumps(ic))
    store = new_store(tmp_path)
    assert import_kb(store, tmp_path / "zd.json", fake_embedder).articles == 1  # drafts are not published knowledge
    assert store.kb_articles()[0]["body"] == "Refunds take 5-7 days." and store.kb_articles()[0]["url"] == "https://help.example/1"
    assert import_kb(store, tmp_path / "ic.json", fake_embedder).articles == 1


def test_bad_kb_input_is_named(tmp_path, fake_embedder):
    store = new_store(tmp_path)
    (tmp_path / "x.json").write_text('{"articles": [{"title": "no body"}]}')
    with pytest.raises(InputError, match="article 1 needs a title and a body"):
        import_kb(store, tmp_path / "x.json", fake_embedder)
    with pytest.raises(InputError, match="no such file"):
        import_kb(store, tmp_path / "missing", fake_embedder)
    assert store.kb_version() is None


def test_kb_articles_in_legacy_encodings_and_utf16(tmp_path, fake_embedder):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "retours.md").write_bytes("# Retours\n\nRetour gratuit sous 30 jours, reçu exigé.".encode("cp1252"))
    (kb / "hours.html").write_bytes(codecs.BOM_UTF16_LE + "<title>Horaires</title><p>Ouvert 24/7 à Paris.</p>"
                                    .encode("utf-16-le"))
    store = new_store(tmp_path)
    result = import_kb(store, kb, fake_embedder)
    bodies = {a["title"]: a["body"] for a in store.kb_articles()}
    assert bodies == {"Horaires": "Ouvert 24/7 à Paris.", "Retours": "Retour gratuit sous 30 jours, reçu exigé."}
    assert any("retours.md" in w and "Windows-1252" in w for w in result.warnings)
    (kb / "broken.md").write_bytes("# Été\n\nDéjà vu ".encode() + b"\xff\n")
    with pytest.raises(InputError, match=r"broken\.md: line 3: bytes that are not valid UTF-8"):
        import_kb(store, kb, fake_embedder)
