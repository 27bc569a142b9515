"""The students: small models served in-process.

- `LlamaStudent`: a GGUF served by llama.cpp (the packaged SmolLM2-135M-Instruct by default, later the
  promoted distilled versions). One loaded model per file per process, generating through one
  `BatchEngine` (assistant.models.engine): the chats of the moment are decoded together in one context, and
  each keeps its KV cache so a follow-up turn reads only its new tokens.
- `GroundedStudent`: a student trained retrieval-augmented, served with the same grounded layout
  (`assistant.grounding.student_layout`) it was trained on. Once a reply is out it embeds the context the
  conversation's next turn will be matched on, so that turn's retrieval embeds only the new message.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ModelError
from assistant.grounding import DEFAULT_BUDGET, Budget, LayoutMemo, fit_window, prompt_budget, student_layout
from assistant.models.base import ChatModel, Usage
from assistant.models.engine import REPEAT_PENALTY, BatchEngine, Finished

_llama_cache: dict[tuple, "Loaded"] = {}
_llama_cache_lock = threading.Lock()


@atexit.register
def _close_llamas() -> None:
    # Stop the engines, then free llama.cpp models before the interpreter tears down the bindings they need.
    for loaded in _llama_cache.values():
        for closable in (loaded.engine, loaded.llm):
            try:
                closable.close()
            except Exception:
                pass
    _llama_cache.clear()


def file_version(path: Path) -> str:
    """A short content hash of a model file: the version shown for an unregistered model."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))  # first MiB + size: enough to tell model files apart, fast
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:12]


@dataclass
class Loaded:
    llm: object  # llama_cpp.Llama: the weights, the vocabulary and the chat template
    engine: BatchEngine  # generation, for every chat served by this file


def load_llama(path: str, n_ctx: int, n_threads: int, slots: int = 1, saved_mb: int = 0) -> Loaded:
    """Load a GGUF once per process (per file and settings) and share it, with the engine that serves it."""
    key = (str(path), n_ctx, n_threads, slots, saved_mb)
    with _llama_cache_lock:
        if key not in _llama_cache:
            try:
                from llama_cpp import Llama
            except ImportError as exc:  # pragma: no cover - install problem
                raise ModelError("llama-cpp-python is not installed; run the setup command in README") from exc
            if not Path(path).is_file():
                raise ModelError(f"student model file not found: {path}")
            # 0 means every core, as documented: llama-cpp-python's own default generates on half of them,
            # which on 2 cores cost about 40% of the tokens/s
            threads = n_threads or os.cpu_count() or 1
            try:
                # The Llama object's own context only tokenizes: the engine has the one that generates.
                llm = Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=threads, verbose=False)
            except Exception as exc:
                raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
            engine = BatchEngine(llm, slots=max(1, slots), n_ctx=n_ctx, n_threads=threads, saved_bytes=saved_mb << 20)
            _llama_cache[key] = Loaded(llm, engine)
        return _llama_cache[key]


class LlamaStudent(ChatModel):
    """A GGUF chat model served in-process by llama.cpp."""

    role = "student"
    local = True

    def __init__(self, path: str | Path, *, name: str | None = None, version: str | None = None,
                 n_ctx: int = 2048, n_threads: int = 0, max_tokens: int = 256, repeat_penalty: float = REPEAT_PENALTY,
                 slots: int = 1, saved_mb: int = 0):
        self.path = Path(path)
        if self.path.suffix.lower() != ".gguf":
            raise ModelError(
                f"the serving student must be a GGUF file, got {self.path}; "
                "train and export a model (assistant train) or point ASSISTANT_STUDENT_BASE at a .gguf"
            )
        self.name = name or self.path.stem
        self.version = version or file_version(self.path)
        self.description = f"student {self.name} (llama.cpp, GGUF)"
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.max_tokens, self.repeat_penalty = max_tokens, repeat_penalty
        loaded = load_llama(str(self.path), n_ctx, n_threads, slots, saved_mb)
        self._llm, self.engine = loaded.llm, loaded.engine
        self._formatter = self._make_formatter()

    def _make_formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = self._llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{self.path} has no chat template in its metadata")
        vocab = self._llm._model
        eos = vocab.token_get_text(self._llm.token_eos()) if hasattr(vocab, "token_get_text") else ""
        bos = vocab.token_get_text(self._llm.token_bos()) if hasattr(vocab, "token_get_text") else ""
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        """Render the chat template over the context window (`fit_window`) and tokenize.

        The window drops old turns in large steps, so a session's consecutive prompts share their prefix
        and llama.cpp, which keeps the previous prompt's KV cache, prefills only the new turn.
        """
        budget = prompt_budget(self.n_ctx, self.max_tokens)
        msgs = fit_window(list(messages), self.count_tokens, budget)
        rendered = self._formatter(messages=msgs)
        tokens = self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
        stop = rendered.stop if isinstance(rendered.stop, list) else ([rendered.stop] if rendered.stop else [])
        return tokens[-budget:], stop

    def _generate(self, messages, max_tokens):
        tokens, stop = self.prompt_tokens(messages)
        for item in self.engine.generate(tokens, max_tokens=max_tokens or self.max_tokens, stop=stop,
                                         repeat_penalty=self.repeat_penalty):
            if isinstance(item, Finished):
                yield Usage(item.prompt_tokens, item.output_tokens, cached_tokens=item.prompt_tokens - item.prefilled,
                            finish_reason=item.finish_reason)
            else:
                yield item  # text, or Queued while every slot is busy


class GroundedStudent(ChatModel):
    """A student trained with retrieval in its prompt, served the same way (`assistant.grounding.student_layout`)."""

    def __init__(self, inner: ChatModel, retriever, budget: Budget = DEFAULT_BUDGET):
        self.inner, self.retriever, self.budget = inner, retriever, budget
        self.name, self.version, self.role, self.local = inner.name, inner.version, inner.role, inner.local
        self.description = inner.description + ", retrieval-augmented"
        self.memo = LayoutMemo()  # a chat's next turn retrieves only for its new message

    def _generate(self, messages, max_tokens):
        parts = []
        layout = student_layout(messages, self.retriever, memo=self.memo, budget=self.budget)
        for item in self.inner._generate(layout, max_tokens):
            if isinstance(item, str):
                parts.append(item)
            yield item
        # The reply is out: embed the next turn's context now, so the customer's next message waits only for its own
        threading.Thread(target=self.retriever.prefetch, args=(list(messages) + [{"role": "assistant", "content": "".join(parts)}],),
                         daemon=True, name="prefetch-context").start()
