"""Every model that answers customers, behind one interface.

- `base`: the `ChatModel` interface (`stream` -> text chunks, then one `Completion`), and `FakeModel`;
- `student`: `LlamaStudent` (a GGUF served in-process by llama.cpp) and `GroundedStudent` (a student
  trained retrieval-augmented, served the layout it learned from);
- `engine`: `BatchEngine`, which decodes the chats of the moment together and keeps each chat's KV cache;
- `teacher`: `OpenAITeacher` (any OpenAI-compatible endpoint) and its grounded prompt;
- `cases`: answering from the nearest resolved case, and `CaseTeacher`, the offline stand-in for the teacher;
- `past_replies`: what a past agent reply must not carry to a new customer.

A new model is a `ChatModel` subclass that writes `_generate`; the names callers import are re-exported here.
"""

from assistant.models.base import ChatModel, Completion, FakeModel, Usage
from assistant.models.engine import Queued
from assistant.models.cases import CaseTeacher, nearest_reply, reuse
from assistant.models.past_replies import identifier_kinds, kb_text, make_safe, neutralise_placeholders, unsupported_content
from assistant.models.student import GroundedStudent, LlamaStudent
from assistant.models.teacher import SUPPORT_POLICY, OpenAITeacher, grounding_block, redact_url, teacher_messages

__all__ = [
    "ChatModel", "Completion", "FakeModel", "Usage", "Queued",
    "CaseTeacher", "nearest_reply", "reuse",
    "identifier_kinds", "kb_text", "make_safe", "neutralise_placeholders", "unsupported_content",
    "GroundedStudent", "LlamaStudent",
    "SUPPORT_POLICY", "OpenAITeacher", "grounding_block", "redact_url", "teacher_messages",
]
