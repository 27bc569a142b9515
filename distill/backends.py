"""Who writes a teacher label: the backends the labeller calls, one request per assistant turn.

- `OpenAIBackend`: any OpenAI-compatible endpoint. It makes no retries of its own: it sorts failures into
  `RetryableError` (429, 5xx, a timeout, an empty or malformed answer) and `TeacherRejected` (401/403, a
  wrong or revoked key), so the labeller can count, pace and bound its retries. Its request parameters
  come from the teacher's capability table (`assistant.models.teacher`), live and in Batch API files alike;
  a parameter the endpoint refuses fails the job with a ConfigError naming it.
- `CaseBackend`: the offline stand-in: the reply agents gave in the most similar *other* resolved
  conversation (`assistant.models.nearest_reply`).

A new backend has a `name`, says whether it runs `local`ly (priced by compute time, not tokens) and
answers `call(LabelRequest) -> CallResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from assistant.errors import AssistantError, ConfigError
from assistant.models import kb_text, nearest_reply
from assistant.models.teacher import Capabilities, capabilities_for, refused_parameter, request_params, \
    teacher_capabilities, usage_counts


@dataclass
class LabelRequest:
    messages: list[dict]  # the rendered prompt
    history: list[dict]  # the conversation up to the turn being labelled
    conversation_id: int
    max_tokens: int
    temperature: float


@dataclass
class CallResult:
    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None


class RetryableError(AssistantError):
    """A call that may succeed if made again: 429, 5xx, a timeout, an empty or malformed answer."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TeacherRejected(AssistantError):
    """The teacher refused us for good (401/403: a wrong or revoked key); the job stops at once, no retries."""


class LabelBackend(Protocol):
    name: str
    local: bool

    def call(self, request: LabelRequest) -> CallResult: ...


class OpenAIBackend:
    """Any OpenAI-compatible endpoint; the labeller does its own retries so it can count and pace them."""

    local = False

    def __init__(self, *, base_url, api_key, model, timeout=120.0, http_client=None,
                 capabilities: Capabilities | None = None, extra_body: dict | None = None, headers: dict | None = None):
        import openai

        self.name = model
        self.capabilities = capabilities or capabilities_for(model)
        self.extra_body = dict(extra_body or {})
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                    max_retries=0, http_client=http_client,
                                    **({"default_headers": dict(headers)} if headers else {}))

    def body(self, messages: list[dict], max_tokens: int | None, temperature: float | None) -> dict:
        """One chat-completions request body as this endpoint wants it (the Batch API file holds these too)."""
        return {"model": self.name, "messages": messages, **request_params(self.capabilities, max_tokens, temperature),
                **self.extra_body}

    def call(self, request: LabelRequest) -> CallResult:
        import openai

        body = self.body(request.messages, request.max_tokens, request.temperature)
        try:
            # the extra body goes through extra_body so the client sends keys it does not know
            resp = self.client.chat.completions.create(
                model=self.name, messages=request.messages, **request_params(self.capabilities, request.max_tokens,
                                                                             request.temperature),
                **({"extra_body": self.extra_body} if self.extra_body else {}))
        except openai.RateLimitError as exc:
            raise RetryableError("429 rate limited", _retry_after(exc.response)) from exc
        except openai.InternalServerError as exc:
            raise RetryableError(f"HTTP {exc.status_code}", _retry_after(exc.response)) from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise RetryableError(f"connection: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise TeacherRejected(f"teacher rejected the API key (HTTP {exc.status_code})") from exc
            if exc.status_code in (408, 409, 425):
                raise RetryableError(f"HTTP {exc.status_code}", _retry_after(exc.response)) from exc
            refused = refused_parameter(exc, self.name, {k: v for k, v in body.items() if k not in ("model", "messages")})
            if refused:
                raise ConfigError(refused) from exc
            raise AssistantError(f"teacher {self.name} refused the request: HTTP {exc.status_code} {exc.message}") from exc
        except (openai.APIResponseValidationError, ValueError, TypeError) as exc:  # a body that is not JSON
            raise RetryableError(f"malformed answer: {type(exc).__name__}") from exc
        try:
            choice = resp.choices[0]
            text = choice.message.content
            input_tokens, output_tokens, cached_tokens = usage_counts(resp.usage)
            result = CallResult(text=text if isinstance(text, str) else "", finish_reason=choice.finish_reason,
                                input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens)
        except (AttributeError, TypeError, IndexError, KeyError) as exc:  # `{}`, `[]`, choices of the wrong shape
            raise RetryableError(f"malformed answer: {type(exc).__name__}") from exc
        if not result.text.strip():
            raise RetryableError("empty answer")  # retried, and never stored: a rerun would reuse it forever
        return result


def _retry_after(response) -> float | None:
    try:
        value = response.headers.get("retry-after-ms")
        if value is not None:
            return float(value) / 1000
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None


class CaseBackend:
    """The offline case-based teacher as a labeller: the reply agents gave in the most similar *other*
    resolved conversation (the conversation being labelled is excluded, or it would copy itself)."""

    local = True
    name = "case-based"
    CANDIDATES = 5  # close cases looked at, in case the closest ones carry what a reply must not

    def __init__(self, retriever):
        self.retriever = retriever
        self._kb = kb_text(retriever.kb)  # what a served reply may link to or quote

    def call(self, request: LabelRequest) -> CallResult:
        # a reply carrying an instruction, markup or a link the KB does not contain never becomes a label
        text, hit = nearest_reply(self.retriever.cases, request.history, self.CANDIDATES,
                                  exclude=self.retriever.exclude | {request.conversation_id}, kb=self._kb)
        if hit is None:
            return CallResult("", "stop", 0, 0)
        return CallResult(text, "stop", sum(len(m["content"].split()) for m in request.messages), len(text.split()))


def make_backend(settings, retriever) -> LabelBackend:
    """The configured teacher endpoint, or the offline case-based stand-in."""
    if settings.teacher_configured:
        return OpenAIBackend(base_url=settings.teacher_base_url, api_key=settings.teacher_api_key,
                             model=settings.teacher_model, timeout=settings.label_timeout,
                             capabilities=teacher_capabilities(settings, settings.teacher_model),
                             extra_body=settings.teacher_extra_body, headers=settings.teacher_headers)
    return CaseBackend(retriever)
