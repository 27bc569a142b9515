from pathlib import Path

import pytest

from assistant.errors import ConfigError
from assistant.settings import Settings, packaged_student_gguf


def test_defaults_are_offline_and_local():
    s = Settings.from_env({})
    assert not s.teacher_configured
    assert s.host == "127.0.0.1" and s.port == 7860
    assert s.home.name == ".assistant"
    assert s.student_path == str(packaged_student_gguf())
    assert Path(s.student_path).is_file()


def test_a_named_teacher_falls_back_to_standard_openai_variables():
    s = Settings.from_env({"ASSISTANT_TEACHER_MODEL": "deepseek-v4-flash", "OPENAI_API_KEY": "sk-x",
                           "OPENAI_BASE_URL": "https://api.deepseek.com", "OPENAI_MODEL": "deepseek-chat"})
    assert s.teacher_configured and not s.teacher_notice
    assert (s.teacher_base_url, s.teacher_api_key, s.teacher_model) == ("https://api.deepseek.com", "sk-x", "deepseek-v4-flash")
    own = Settings.from_env({"ASSISTANT_TEACHER_BASE_URL": "http://localhost:8000/v1", "OPENAI_API_KEY": "sk-x",
                             "ASSISTANT_TEACHER_API_KEY": "sk-own", "OPENAI_MODEL": "Qwen/Qwen3-8B"})
    assert own.teacher_configured and own.teacher_api_key == "sk-own" and own.teacher_model == "Qwen/Qwen3-8B"


@pytest.mark.parametrize("env", [
    {"OPENAI_API_KEY": "sk-for-another-tool"},
    {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "https://api.deepseek.com", "OPENAI_MODEL": "deepseek-v4-pro"},
    {"ASSISTANT_TEACHER_API_KEY": "sk-x"},  # a key alone does not say which model to pay for
])
def test_a_key_exported_for_something_else_never_turns_on_a_paid_teacher(env):
    s = Settings.from_env(env)
    assert not s.teacher_configured and s.teacher_api_key is None and s.teacher_base_url is None
    first = next(iter(env))
    assert s.teacher_notice.startswith(first) and "ASSISTANT_TEACHER_MODEL" in s.teacher_notice
    assert "nothing is paid" in s.teacher_notice and "\n" not in s.teacher_notice  # one line
    assert not Settings.from_env({}).teacher_notice


def test_the_config_file_names_a_teacher_too(tmp_path):
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('teacher_model = "gpt-5.4-mini"\n[teacher_extra_body]\nreasoning_effort = "low"\n')
    s = Settings.from_env({"ASSISTANT_CONFIG": str(cfg), "OPENAI_API_KEY": "sk-x"})
    assert s.teacher_configured and s.teacher_api_key == "sk-x" and s.teacher_extra_body == {"reasoning_effort": "low"}


def test_json_object_settings_are_parsed_and_headers_never_shown():
    s = Settings.from_env({"ASSISTANT_TEACHER_CAPABILITIES": '{"token_param": "max_completion_tokens"}',
                           "ASSISTANT_TEACHER_EXTRA_BODY": '{"top_k": 20}',
                           "ASSISTANT_TEACHER_HEADERS": '{"api-key": "azure-secret"}'})
    assert s.teacher_capabilities == {"token_param": "max_completion_tokens"} and s.teacher_extra_body == {"top_k": 20}
    assert all("azure-secret" not in value for _, _, value, _ in s.describe())
    assert "teacher_notice" not in [name for name, *_ in s.describe()]
    with pytest.raises(ConfigError, match="ASSISTANT_TEACHER_EXTRA_BODY"):
        Settings.from_env({"ASSISTANT_TEACHER_EXTRA_BODY": "[1, 2]"})


def test_an_installed_package_keeps_its_state_in_the_user_data_directory(monkeypatch, tmp_path):
    import assistant.settings as settings_module

    assert Settings.from_env({}).home == settings_module.REPO_ROOT / ".assistant"  # a checkout: beside the code
    site_packages = tmp_path / "site-packages"  # no pyproject.toml beside the package: an installed wheel
    site_packages.mkdir()
    monkeypatch.setattr(settings_module, "REPO_ROOT", site_packages)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    assert Settings.from_env({}).home == tmp_path / "data-home" / "support-assistant"
    assert Settings.from_env({"ASSISTANT_HOME": str(tmp_path / "mine")}).home == tmp_path / "mine"


def test_gradio_variables_are_honoured_and_ours_win():
    s = Settings.from_env({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000"})
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert Settings.from_env({"GRADIO_SERVER_PORT": "9000", "ASSISTANT_PORT": "9100"}).port == 9100


def test_prices_merge_over_builtin_table():
    s = Settings.from_env({"ASSISTANT_PRICES": '{"my-model": [1, 2], "gpt-4o": [3, 4]}'})
    assert s.price("my-model") == (1.0, 2.0)
    assert s.price("gpt-4o") == (3.0, 4.0)
    assert s.price("deepseek-v4-flash") == (0.14, 0.28, 0.0028)  # with its cached-input price
    assert s.price("deepseek-chat") is None  # retired on 2026-07-24
    assert s.price("unknown") is None
    assert Settings.from_env({"ASSISTANT_PRICES": '{"m": [1, 2, 0.1]}'}).price("m") == (1.0, 2.0, 0.1)


@pytest.mark.parametrize("env, needle", [
    ({"ASSISTANT_PORT": "eighty"}, "ASSISTANT_PORT"),
    ({"ASSISTANT_PRICES": "[1,2]"}, "ASSISTANT_PRICES"),
    ({"ASSISTANT_SEED_SAMPLE": "maybe"}, "ASSISTANT_SEED_SAMPLE"),
    ({"ASSISTANT_CONFIG": "/nonexistent/config.toml"}, "does not exist"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_config_file_is_read_and_environment_wins(tmp_path):
    cfg = tmp_path / "assistant.toml"
    cfg.write_text('teacher_model = "deepseek-chat"\nport = 8000\n')
    s = Settings.from_env({"ASSISTANT_CONFIG": str(cfg), "ASSISTANT_PORT": "8100"})
    assert s.teacher_model == "deepseek-chat" and s.port == 8100
    cfg.write_text('no_such_key = 1\n')
    with pytest.raises(ConfigError, match="no_such_key"):
        Settings.from_env({"ASSISTANT_CONFIG": str(cfg)})


def test_describe_hides_the_api_key():
    rows = Settings.from_env({"OPENAI_API_KEY": "sk-secret-value"}).describe()
    assert all("secret" not in value for _, _, value, _ in rows)


def test_a_setting_with_choices_refuses_anything_else():
    assert Settings.from_env({"ASSISTANT_EMBEDDER": "hashing"}).embedder == "hashing"
    with pytest.raises(ConfigError, match=r"ASSISTANT_EMBEDDER \(embedder\): 'bert' is not one of minilm, hashing"):
        Settings.from_env({"ASSISTANT_EMBEDDER": "bert"})
