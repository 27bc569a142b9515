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


def test_teacher_falls_back_to_standard_openai_variables():
    s = Settings.from_env({"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "https://api.deepseek.com", "OPENAI_MODEL": "deepseek-chat"})
    assert s.teacher_configured
    assert (s.teacher_base_url, s.teacher_api_key, s.teacher_model) == ("https://api.deepseek.com", "sk-x", "deepseek-chat")
    own = Settings.from_env({"OPENAI_API_KEY": "sk-x", "ASSISTANT_TEACHER_API_KEY": "sk-own"})
    assert own.teacher_api_key == "sk-own"


def test_gradio_variables_are_honoured_and_ours_win():
    s = Settings.from_env({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000"})
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert Settings.from_env({"GRADIO_SERVER_PORT": "9000", "ASSISTANT_PORT": "9100"}).port == 9100


def test_prices_merge_over_builtin_table():
    s = Settings.from_env({"ASSISTANT_PRICES": '{"my-model": [1, 2], "gpt-4o": [3, 4]}'})
    assert s.price("my-model") == (1.0, 2.0)
    assert s.price("gpt-4o") == (3.0, 4.0)
    assert s.price("deepseek-chat") == (0.27, 1.10)
    assert s.price("unknown") is None


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
