"""Builds what a running application needs from the settings: store, retrieval, student, teacher, router.

The UI, the CLI and the benchmarks all start here, so they serve the same models the same way. Routers are
built here only (`make_router`, for the chat and the offline A/B alike), by name from assistant.router's
registry, and `threshold` says where a router's score sends a turn to the teacher.
On an empty store the sample company (data/sample) is loaded first, so the offline teacher has a
knowledge base and resolved cases to answer from; turn that off with ASSISTANT_SEED_SAMPLE=false.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from assistant import students
from assistant.limits import TeacherCallLimit
from assistant.models import CaseTeacher, ChatModel, OpenAITeacher
from assistant.models.teacher import teacher_capabilities
from assistant.retrieval import Embedder, Retriever, build_retriever, embedder_for
from assistant.router import ROUTERS, Router, Signals, build_router, calibrate_threshold
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
    teacher_calls: TeacherCallLimit | None = None  # per-minute teacher limit; None: from the settings
    _checked_at: float = 0.0
    _serving_version: str | None = None
    _routers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.teacher_calls is None:
            self.teacher_calls = TeacherCallLimit(self.settings.teacher_calls_per_minute)

    def router_for(self, name: str | None = None) -> Router:
        """The router called `name` (the chat's Auto options), built once; None or the default's name: `router`."""
        if not name or name == self.router.name:
            return self.router
        if name not in self._routers:
            self._routers[name] = make_router(self.settings, self.store, self.retriever, name)
        return self._routers[name]

    def threshold(self, router: Router, teacher_share: float | None = None) -> float:
        return router_threshold(self.store, self.settings, router, teacher_share)

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
        for router in [self.router, *self._routers.values()]:
            if isinstance(getattr(router, "signals", None), Signals):
                router.signals.retriever = self.retriever
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
        router=make_router(settings, store, retriever),
        follow_registry=student is None,
    )
    services.current_student()
    return services


def make_router(settings: Settings, store: Store, retriever: Retriever | None, name: str | None = None) -> Router:
    """The router called `name` (default: settings.router), with the serving learned version for "learned"."""
    name = name or settings.router
    return build_router(name, retriever, store.serving_router() if name == "learned" else None)


def available_routers(store: Store) -> list[str]:
    """The routers that can be picked now: every one in the registry, "learned" once a version is trained."""
    return [name for name in ROUTERS if name != "learned" or store.serving_router() is not None]


def router_threshold(store: Store, settings: Settings, router: Router, teacher_share: float | None = None) -> float:
    """Where `router`'s score sends a turn to the teacher.

    A target teacher share (the chat's slider, else settings.router_teacher_share when above 0) becomes
    the threshold that sends that share of the router's calibration scores to the teacher (its recent Auto
    scores from the logs when it was never calibrated). Without a share: the calibrated threshold, else
    settings.router_threshold."""
    share = teacher_share if teacher_share is not None else (settings.router_teacher_share or None)
    version = getattr(router, "version", "")
    calibration = store.router_calibration(router.name, version)
    if share is not None:
        if share <= 0:
            return calibrate_threshold([], 0.0)  # no turn to the teacher
        scores = calibration["scores"] if calibration else store.route_scores(router.name, version)
        if scores:
            return calibrate_threshold(scores, min(1.0, share))
    if calibration:
        return calibration["threshold"]
    return settings.router_threshold


def current_share(store: Store, settings: Settings, router: Router) -> float | None:
    """The share of turns the router's threshold sends to the teacher, on its calibration scores (else its logged
    Auto scores); None when there are none to tell (the chat's slider starts there)."""
    version = getattr(router, "version", "")
    calibration = store.router_calibration(router.name, version)
    scores = calibration["scores"] if calibration else store.route_scores(router.name, version)
    if not scores:
        return None
    threshold = router_threshold(store, settings, router)
    return sum(s >= threshold for s in scores) / len(scores)
