"""Labelling backends (distill.backends): the case-based stand-in and the configured endpoint."""

from dataclasses import replace

from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from distill.backends import CaseBackend, LabelRequest, make_backend
from tests.assistant.models.test_cases import POISONED, case_teacher, conv


def test_case_backend_never_labels_with_a_poisoned_reply(fake_embedder):
    retriever = case_teacher(fake_embedder, conv(70, "where is my refund", POISONED[0]),
                             conv(71, "where is my refund now", "Refunds take 5-7 business days.")).retriever
    history = [{"role": "user", "content": "where is my refund"}]
    result = CaseBackend(retriever).call(LabelRequest(history, history, 99, 100, 0.0))
    assert result.text == "Refunds take 5-7 business days."


def test_case_backend_never_answers_from_the_conversation_it_labels(fake_embedder):
    retriever = Retriever(KnowledgeBase([], fake_embedder),
                          CaseBase([conv(72, "where is my refund", "Refunds take 5-7 business days.")], fake_embedder))
    history = [{"role": "user", "content": "where is my refund"}]
    backend = CaseBackend(retriever)
    assert backend.call(LabelRequest(history, history, 99, 100, 0.0)).text == "Refunds take 5-7 business days."
    own = backend.call(LabelRequest(history, history, 72, 100, 0.0))
    assert own.text == "" and own.output_tokens == 0  # nothing else to answer from: an empty (rejected) label


def test_make_backend_uses_the_labelling_timeout_or_the_offline_stand_in(settings, fake_embedder):
    backend = make_backend(replace(settings, teacher_api_key="k", label_timeout=7.5), retriever=None)
    assert backend.client.timeout == 7.5 and not backend.local
    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder))
    offline = make_backend(settings, retriever)
    assert isinstance(offline, CaseBackend) and offline.local


# ---- provider profiles ----------------------------------------------------------------------------------

import pytest  # noqa: E402

from assistant.errors import ConfigError  # noqa: E402
from assistant.pricing import call_cost  # noqa: E402
from eval.fake_teacher import FakeTeacher  # noqa: E402
from tests.assistant.models.providers import EXPECTED, PROFILES, expected_cost, provider_settings  # noqa: E402

PROMPT = [{"role": "system", "content": "Write the agent's reply."}, {"role": "user", "content": "Where is my order?"}]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_labelling_backend_sends_each_provider_what_it_accepts_and_reads_its_usage(profile, tmp_path):
    with FakeTeacher(profile=profile) as fake:
        settings = provider_settings(profile, fake.url, tmp_path)
        backend = make_backend(settings, retriever=None)
        result = backend.call(LabelRequest(PROMPT, PROMPT[1:], 1, 300, 0.2))
    path, sent, never, (header, value) = EXPECTED[profile]
    [request] = fake.requests
    assert request["path"] == path and request["headers"][header] == value
    assert sent <= set(request["body"]) and not never & set(request["body"]) and "stream" not in request["body"]
    assert request["body"].get("max_completion_tokens", request["body"].get("max_tokens")) == 300
    assert request["body"] == backend.body(PROMPT, 300, 0.2)  # what a Batch API file would hold for it
    usage = {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
             "prompt_cache_hit_tokens": result.cached_tokens or 0}
    assert result.input_tokens > 0 and result.output_tokens == 10
    cost = call_cost(local=backend.local, model=backend.name, settings=settings, seconds=1.0, input_tokens=result.input_tokens,
                     output_tokens=result.output_tokens, cached_tokens=result.cached_tokens)
    expected = expected_cost(settings, usage)
    assert cost == (None if expected is None else pytest.approx(expected, abs=1e-8))


def test_a_refused_parameter_is_a_config_error_naming_it(tmp_path):
    with FakeTeacher(profile="openai-reasoning") as fake:
        settings = provider_settings("openai-reasoning", fake.url, tmp_path)
        backend = make_backend(replace(settings, teacher_capabilities={"temperature": True}), retriever=None)
        with pytest.raises(ConfigError, match=r"does not accept the parameter 'temperature'.*\"temperature\": false"):
            backend.call(LabelRequest(PROMPT, PROMPT[1:], 1, 300, 0.2))
