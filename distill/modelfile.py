"""An Ollama Modelfile beside an exported student GGUF, so `ollama create` serves it as the app does.

The Modelfile carries what the GGUF alone does not tell Ollama the way the app uses it: the chat template
in Ollama's Go template syntax (ChatML for the SmolLM2 family; for another template Ollama's own detection
from the GGUF's metadata is left to work), the stop tokens, the system message the student was trained
with, and the serving parameters (greedy decoding, the repeat penalty, the context and reply lengths).

A retrieval-augmented student (the default) learnt to answer with a <reference> block (a KB passage and
similar past replies) after each customer message, which only this app's retrieval adds: served by Ollama
alone it gets none and answers worse. `retrieval_warning` says so; the Modelfile carries it as a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from assistant.grounding import STUDENT_POLICY
from assistant.models.engine import REPEAT_PENALTY

# The served student's decoding (assistant.models.engine: greedy, repeat penalty over the reply).

# ChatML as an Ollama template: every message, then the assistant's turn opened for the reply.
CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
# The system message a ChatML Jinja template inserts when a chat has none (SmolLM2's names itself); the
# newline after "system" is a real one or an escaped one inside a Jinja string.
_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.+?)<\|im_end\|>", re.S)


@dataclass
class GGUFChat:
    """What the Modelfile needs from a GGUF: its chat template (Jinja) and end-of-sequence token."""

    template: str
    eos: str


def read_chat(gguf_path: Path) -> GGUFChat:
    """The chat template and EOS token of a GGUF (llama.cpp reads only the vocabulary: well under a second)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        eos = llm._model.token_get_text(llm.token_eos())
        return GGUFChat(llm.metadata.get("tokenizer.chat_template", ""), eos)
    finally:
        llm.close()


def retrieval_warning(version: str) -> str:
    return (f"{version} was trained retrieval-augmented: it expects a <reference> block (a KB passage and similar "
            "past replies) after each customer message, which only this app's retrieval adds. Served by Ollama alone "
            "it answers without them, and worse; serve it with `assistant serve` for the grounded answers.")


def modelfile_text(gguf_name: str, chat: GGUFChat, *, version: str, retrieval_augmented: bool, context: int,
                   max_new_tokens: int) -> str:
    """The Modelfile for a GGUF next to it (FROM ./gguf_name)."""
    chatml = "<|im_start|>" in chat.template
    default_system = _CHATML_DEFAULT_SYSTEM.search(chat.template)
    # what the student was trained with: the policy in a retrieval-augmented layout, else the template's own default
    system = STUDENT_POLICY if retrieval_augmented else (default_system.group(1) if default_system else None)
    stops = list(dict.fromkeys(s for s in (["<|im_end|>"] if chatml else []) + [chat.eos] if s))
    lines = [f"# Ollama Modelfile for the support-assistant student {version}",
             f"#   ollama create {ollama_name(version)} -f Modelfile   (from this folder)"]
    if retrieval_augmented:
        lines += ["#", *(f"# WARNING: {line}" for line in _wrap(retrieval_warning(version)))]
    lines += ["", f"FROM ./{gguf_name}"]
    if chatml:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    else:
        lines.append("# TEMPLATE left to Ollama, which reads the chat template from the GGUF's metadata")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines += ["PARAMETER temperature 0", f"PARAMETER repeat_penalty {REPEAT_PENALTY}",
              f"PARAMETER num_ctx {context}", f"PARAMETER num_predict {max_new_tokens}"]
    return "\n".join(lines) + "\n"


def ollama_name(version: str) -> str:
    """A model name Ollama accepts (lower case letters, digits, '-', '_', '.')."""
    return "support-" + re.sub(r"[^a-z0-9._-]+", "-", version.lower()).strip("-")


def _wrap(text: str, width: int = 100) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def write_modelfile(gguf_path: Path, *, version: str, retrieval_augmented: bool, context: int,
                    max_new_tokens: int) -> Path:
    """Write `Modelfile` beside the GGUF; returns its path."""
    gguf_path = Path(gguf_path)
    text = modelfile_text(gguf_path.name, read_chat(gguf_path), version=version,
                          retrieval_augmented=retrieval_augmented, context=context, max_new_tokens=max_new_tokens)
    out = gguf_path.with_name("Modelfile")
    tmp = out.with_name("Modelfile.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
