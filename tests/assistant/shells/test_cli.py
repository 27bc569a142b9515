"""The CLI turns our errors into one clear line and a non-zero exit, and its commands call the plain functions."""

import json
import re
import subprocess
import sys

import pytest

from typer.testing import CliRunner

from assistant.settings import REPO_ROOT, Settings
from assistant.shells.cli import app
from assistant.store import Store, open_store
from tests.importing import FIXTURES, snapshot

runner = CliRunner()


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    result = runner.invoke(app, ["import", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "error:" in result.output and "no such file" in result.output
    # the error was caught and turned into an exit, not left to escape as an exception
    assert isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1


def test_import_then_label_then_datasets():
    result = runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")])
    assert result.exit_code == 0 and "imported 2" in result.output
    result = runner.invoke(app, ["label", "--source", "logged"])
    assert result.exit_code == 0 and "label job 1: done" in result.output and "dataset ds-" in result.output
    listing = runner.invoke(app, ["datasets"])
    assert listing.exit_code == 0 and listing.output.startswith("ds-") and len(listing.output.splitlines()) == 1
    assert "base student serves" in runner.invoke(app, ["models"]).output
    rollback = runner.invoke(app, ["models", "rollback"])
    assert rollback.exit_code == 1 and "nothing to roll back" in rollback.output


def test_labels_rejected_counts_reasons_and_lists_the_latest_jobs_rejections(settings):
    store = open_store(settings)
    assert runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")]).exit_code == 0
    for job in (1, 2):
        store.insert("label_jobs", {"id": job, "source": "logged", "status": "done"})
    for job, index, reason in [(1, 0, "old job"), (2, 0, "too short"), (2, 1, "too short"), (2, 2, "placeholder left")]:
        store.insert("labels", {"job_id": job, "conversation_id": 1, "message_index": index, "source": "logged",
                                "reply": f"reply {index}", "status": "rejected", "reason": reason})
    lines = runner.invoke(app, ["labels", "rejected", "--limit", "2"]).output.splitlines()
    assert lines[0] == "label job 2: too short (2), placeholder left (1)"
    assert lines[1:] == ["- conversation 1 turn 0: too short", "    'reply 0'", "- conversation 1 turn 1: too short",
                         "    'reply 1'"]
    assert runner.invoke(app, ["labels", "rejected", "--job", "1"]).output.startswith("label job 1: old job (1)\n")


def test_import_help_names_the_formats_the_importer_reads():
    import typer

    [option] = [p for p in typer.main.get_command(app).commands["import"].params if p.name == "format"]
    assert option.help == "hf, csv, openai, intercom, zendesk, freshdesk, sharegpt, tsv (default: detected)."


def test_users_add_list_remove_and_every_command_exists_under_python_m(settings):
    from assistant.users import authenticator, load_users

    assert runner.invoke(app, ["users", "add", "lead", "--password-stdin"], input="correct-horse\n").exit_code == 0
    assert runner.invoke(app, ["users"]).output.strip() == "lead"
    assert authenticator(load_users(settings))("lead", "correct-horse")
    short = runner.invoke(app, ["users", "add", "x", "--password-stdin"], input="abc\n")
    assert short.exit_code == 1 and "at least 8" in short.output
    assert runner.invoke(app, ["users", "remove", "lead"]).exit_code == 0
    assert "no console users" in runner.invoke(app, ["users"]).output
    # `python -m assistant.shells.cli` (how torchrun runs the CLI) runs the module as a script: every command
    # must be registered before it runs
    help_text = subprocess.run([sys.executable, "-m", "assistant.shells.cli", "users", "--help"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    assert "add" in help_text and "remove" in help_text


BAD_FILES = [
    ("broken.jsonl", r"broken\.jsonl: line 1: invalid JSON at column 122"),
    ("no_agents.jsonl", r"no_agents\.jsonl: nothing importable.*line 1: no assistant message"),
    ("binary.csv", r"binary\.csv: looks like a binary file"),
    ("doc.json", r"doc\.json: invalid JSON at line 2, column 16: Expecting value"),
    ("not_utf8.jsonl", r"not_utf8\.jsonl: line 1: invalid UTF-8 at byte 46"),
]


@pytest.mark.parametrize("name, message", BAD_FILES)
def test_every_bad_file_exits_non_zero_names_place_and_reason_and_stores_nothing(tmp_path, name, message):
    files = {"no_agents.jsonl": json.dumps({"messages": [{"role": "user", "content": "hello?"}]}).encode() + b"\n",
             "binary.csv": b"\x00\x01\x02\xff" * 64, "doc.json": b'[\n  {"messages": ]}',
             "not_utf8.jsonl": b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'}
    path = FIXTURES / name if name not in files else tmp_path / name
    if name in files:
        path.write_bytes(files[name])
    result = runner.invoke(app, ["import", str(path)])
    # an unhandled exception also exits 1 under CliRunner; our error path exits through SystemExit
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert re.search(message, result.output.replace("\n", " ")), result.output
    db = Store(Settings.from_env().db_path)
    assert snapshot(db) == {"conversations": [], "imports": []}


def test_train_takes_the_loss_by_name_and_refuses_an_unknown_one():
    assert "--loss" in runner.invoke(app, ["train", "--help"]).output
    result = runner.invoke(app, ["train", "--loss", "token_kl"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "unknown loss 'token_kl'; known losses: cross_entropy" in result.output


# ---- money, exports and optional dependencies (#15) ------------------------------------------------------

def test_label_says_what_it_will_spend_before_calling_a_paid_teacher(monkeypatch, tmp_path):
    from eval.fake_teacher import FakeTeacher
    from tests.assistant.models.providers import provider_env

    assert runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")]).exit_code == 0
    with FakeTeacher(profile="deepseek") as fake:
        for name, value in provider_env("deepseek", fake.url).items():
            monkeypatch.setenv(name, value)
        result = runner.invoke(app, ["label", "--budget", "0.5"])
    first = result.output.splitlines()[0]
    assert result.exit_code == 0, result.output
    assert first.startswith("labelling 3 turns with the paid teacher deepseek-v4-flash: 0 stored (free), 3 to call, about $")
    assert "job budget $0.50" in first and fake.calls == 3
    assert "label job 1: done; labels by deepseek-v4-flash" in result.output


def test_a_key_exported_for_something_else_is_named_and_labelling_stays_free(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-my-other-tool")
    assert runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")]).exit_code == 0
    result = runner.invoke(app, ["label"])
    assert result.exit_code == 0
    assert "note: OPENAI_API_KEY is set but no teacher is named, so it is ignored" in result.output
    assert "labelling 3 turns with the agents' logged replies" in result.output


def test_models_export_ollama_writes_a_modelfile_beside_the_gguf_and_warns_for_a_grounded_student(settings, tmp_path):
    import json as _json

    from assistant.settings import packaged_student_gguf

    store = open_store(settings)
    folder = settings.home / "models" / "student-001"
    folder.mkdir(parents=True)
    (folder / "model.gguf").symlink_to(packaged_student_gguf())
    store.insert("model_versions", {"version": "student-001", "status": "registered", "gguf_path": str(folder / "model.gguf"),
                                    "config": _json.dumps({"retrieval_augmented": True})})
    assert runner.invoke(app, ["models", "export", "student-001"]).exit_code == 1  # which tool? --ollama
    result = runner.invoke(app, ["models", "export", "student-001", "--ollama"])
    assert result.exit_code == 0, result.output
    assert (folder / "Modelfile").read_text().startswith("# Ollama Modelfile for the support-assistant student student-001")
    assert "warning: student-001 was trained retrieval-augmented" in result.output
    assert "ollama create support-student-001 -f Modelfile" in result.output


def test_a_missing_optional_dependency_is_one_line_naming_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_datasets(name, *args, **kwargs):
        if name.split(".")[0] == "datasets":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    assert runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")]).exit_code == 0
    monkeypatch.setattr(builtins, "__import__", without_datasets)
    result = runner.invoke(app, ["label", "--source", "logged"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "error: this needs datasets, an optional dependency: pip install 'support-assistant[train]'" in result.output


def test_datasets_export_writes_grounded_prompt_completion_and_openai_rows(monkeypatch, settings):
    from assistant.grounding import STUDENT_POLICY

    monkeypatch.setenv("ASSISTANT_EMBEDDER", "hashing")  # retrieval without a model load
    assert runner.invoke(app, ["kb", "import", str(REPO_ROOT / "data" / "sample" / "kb")]).exit_code == 0
    assert runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")]).exit_code == 0
    assert runner.invoke(app, ["label", "--source", "logged"]).exit_code == 0
    result = runner.invoke(app, ["datasets", "export"])
    assert result.exit_code == 0, result.output
    files = result.output.split()
    assert any(f.endswith("train.grounded.prompt_completion.jsonl") for f in files) and len(files) == 6
    rows = [json.loads(line) for f in files if f.endswith(".grounded.prompt_completion.jsonl") for line in open(f)]
    assert rows and all(r["prompt"][0]["role"] == "system" and r["prompt"][0]["content"].startswith(STUDENT_POLICY) for r in rows)
    assert any("<reference>" in m["content"] for r in rows for m in r["prompt"] if m["role"] == "user")
    assert all(r["completion"][0]["role"] == "assistant" and r["prompt"][-1]["role"] == "user" for r in rows)
    openai_rows = [json.loads(line) for f in files if f.endswith(".grounded.openai.jsonl") for line in open(f)]
    assert len(openai_rows) == len(rows) and all(r["messages"][-1]["weight"] == 1 for r in openai_rows)
    plain = runner.invoke(app, ["datasets", "export", "--plain"]).output.split()
    assert all(".plain." in f for f in plain)
    assert not any("<reference>" in line for f in plain if f.endswith("prompt_completion.jsonl") for line in open(f))


def test_routers_lists_the_registry_and_calibrate_explains_what_to_run_first():
    listing = runner.invoke(app, ["routers"])
    assert listing.exit_code == 0 and "* rules" in listing.output and "confidence" in listing.output
    assert "no learned router trained yet" in listing.output
    calibrate = runner.invoke(app, ["router", "calibrate", "--teacher-share", "0.2"])
    assert calibrate.exit_code == 1 and "--split validation" in calibrate.output
    train = runner.invoke(app, ["router", "train"])
    assert train.exit_code == 1 and "too few" in train.output
