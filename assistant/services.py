"""Builds what a running application needs from the settings: store, retrieval, student, teacher, router.

The UI, the CLI and the benchmarks all start here, so they serve the same models the same way.
On an empty store the sample company (data/sample) is loaded first, so the offline teacher has a
knowledge base and resolved cases to answer from; turn that off with ASSISTANT_SEED_SAMPLE=false.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from assistant import students
from assistant.models import CaseTeacher, ChatModel, OpenAITeacher
from assistant.models.teacher import teacher_capabilities
from assistant.retrieval import Embedder, Retriever, build_retriever, embedder_for
from assistant.router import Router, RuleRouter
from assistant.settings import Settings
from assistant.store import Store, open_store

log = logging.getLogger(__name__)

@dataclass
class Services:
    settings: Settings
    store: Store
    retriever: Retriever
    student: ChatModel
    teacher: ChatModel
    router: Router
    follow_registry: bool = False  # swap in a newly promoted (or rolled back) student without a restart
    _checked_at: float = 0.0
    _serving_version: str | None = None

    def current_student(self) -> ChatModel:
        """The student to answer with now; picks up promotions and rollbacks (checked at most once a second)."""
        if not self.follow_registry or time.monotonic() - self._checked_at < 1.0:
            return self.student
        self._checked_at = time.monotonic()
        row = students.serving(self.store)
        version = row["version"] if row else None
        if version != self._serving_version:
            self.student = students.serving_student(self.store, self.settings, self.retriever)
            self._serving_version = version
            log.info("now serving student %s", version or "base")
        return self.student

    @property
    def teacher_is_standin(self) -> bool:
        return isinstance(self.teacher, CaseTeacher)

    def reload_retrieval(self) -> None:
        """Rebuild KB and case retrieval after an import, so the teacher uses the new data at once."""
        self.retriever = build_retriever(self.store, self.retriever.kb.embedder)
        for model in (self.teacher, self.student):  # the grounded ones: teachers, a retrieval-augmented student
            if hasattr(model, "retriever"):
                model.retriever = self.retriever
        if isinstance(self.teacher, CaseTeacher):
            self.teacher.version = f"cases-{self.retriever.cases.size}"


def make_teacher(settings: Settings, retriever: Retriever, http_client=None, *, for_chat: bool = False) -> ChatModel:
    """The configured teacher, or the offline case-based stand-in.

    `for_chat`: the chat gives the teacher settings.chat_teacher_deadline in all (`chat.bounded_stream`); its
    client's timeout is cut to that too, so a call the chat gave up on ends soon instead of holding a
    connection and a thread for teacher_timeout x retries. The request parameters follow the capability
    table (with ASSISTANT_TEACHER_CAPABILITIES), plus ASSISTANT_TEACHER_EXTRA_BODY and ASSISTANT_TEACHER_HEADERS."""
    if settings.teacher_configured:
        timeout = settings.teacher_timeout
        if for_chat and settings.chat_teacher_deadline > 0:
            timeout = min(timeout, settings.chat_teacher_deadline)
        return OpenAITeacher(
            base_url=settings.teacher_base_url, api_key=settings.teacher_api_key, model=settings.teacher_model,
            timeout=timeout, max_retries=settings.teacher_max_retries, retriever=retriever,
            max_tokens=max(settings.max_new_tokens, 256), http_client=http_client,
            capabilities=teacher_capabilities(settings, settings.teacher_model), extra_body=settings.teacher_extra_body,
            headers=settings.teacher_headers,
        )
    return CaseTeacher(retriever)


def build_services(settings: Settings, *, student: ChatModel | None = None, teacher: ChatModel | None = None,
                   embedder: Embedder | None = None) -> Services:
    store = open_store(settings)
    retriever = build_retriever(store, embedder or embedder_for(settings))
    retriever.kb.search("warm-up")  # load the embedder now, not on the first customer's message
    services = Services(
        settings=settings,
        store=store,
        retriever=retriever,
        student=student or students.serving_student(store, settings, retriever),  # the promoted version, else the base
        teacher=teacher or make_teacher(settings, retriever, for_chat=True),
        router=RuleRouter(),
        follow_registry=student is None,
    )
    services.current_student()
    return services
