"""Provider profiles the teacher tests share: how each provider's users configure the teacher (environment
variables, as README shows them) against eval.fake_teacher.FakeTeacher in that provider's profile, and what
the request must then carry."""

import json

from assistant.settings import Settings


def provider_env(profile: str, url: str) -> dict:
    """The environment a user of `profile` sets, with the fake server's `url` (http://127.0.0.1:PORT/v1)."""
    root = url.rsplit("/v1", 1)[0]
    return {
        # OpenAI itself: a reasoning model; only the model is named, the key is the usual OPENAI_API_KEY
        "openai-reasoning": {"ASSISTANT_TEACHER_MODEL": "gpt-5.4-mini", "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": url},
        "deepseek": {"ASSISTANT_TEACHER_BASE_URL": url, "ASSISTANT_TEACHER_MODEL": "deepseek-v4-flash",
                     "ASSISTANT_TEACHER_API_KEY": "sk-deepseek",
                     "ASSISTANT_TEACHER_EXTRA_BODY": json.dumps({"thinking": {"type": "disabled"}})},
        "vllm": {"ASSISTANT_TEACHER_BASE_URL": url, "ASSISTANT_TEACHER_MODEL": "Qwen/Qwen3-8B",
                 "ASSISTANT_TEACHER_EXTRA_BODY": json.dumps({"chat_template_kwargs": {"enable_thinking": False}})},
        "ollama": {"ASSISTANT_TEACHER_BASE_URL": url, "ASSISTANT_TEACHER_MODEL": "llama3.1:8b"},
        # Azure OpenAI's v1 API: the model is the deployment's name, which no table can know
        "azure": {"ASSISTANT_TEACHER_BASE_URL": f"{root}/openai/v1/", "ASSISTANT_TEACHER_MODEL": "support-o4-mini",
                  "ASSISTANT_TEACHER_API_KEY": "azure-key", "ASSISTANT_TEACHER_HEADERS": json.dumps({"api-key": "azure-key"}),
                  "ASSISTANT_TEACHER_CAPABILITIES": json.dumps({"token_param": "max_completion_tokens", "temperature": False}),
                  "ASSISTANT_PRICES": json.dumps({"support-o4-mini": [1.10, 4.40, 0.275]})},
    }[profile]


# profile -> (request path, generation parameters sent, parameters never sent, header that must be sent)
EXPECTED = {
    "openai-reasoning": ("/v1/chat/completions", {"max_completion_tokens"}, {"max_tokens", "temperature"}, ("authorization", "Bearer sk-test")),
    "deepseek": ("/v1/chat/completions", {"max_tokens", "temperature", "thinking"}, {"max_completion_tokens"}, ("authorization", "Bearer sk-deepseek")),
    "vllm": ("/v1/chat/completions", {"max_tokens", "temperature", "chat_template_kwargs"}, {"max_completion_tokens"}, ("authorization", "Bearer not-needed")),
    "ollama": ("/v1/chat/completions", {"max_tokens", "temperature"}, {"max_completion_tokens"}, ("authorization", "Bearer not-needed")),
    "azure": ("/openai/v1/chat/completions", {"max_completion_tokens"}, {"max_tokens", "temperature"}, ("api-key", "azure-key")),
}
PROFILES = tuple(EXPECTED)


def provider_settings(profile: str, url: str, home) -> Settings:
    return Settings.from_env({"ASSISTANT_HOME": str(home), **provider_env(profile, url)})


def expected_cost(settings: Settings, usage: dict) -> float | None:
    """What the usage costs at the settings' price, written out (cached input at its own rate)."""
    price = settings.price(settings.teacher_model)
    if price is None:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
    return ((usage["prompt_tokens"] - cached) * price[0] + cached * price[2] + usage["completion_tokens"] * price[1]) / 1e6
