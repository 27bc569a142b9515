"""The CLI turns our errors into one clear line and a non-zero exit, and its commands call the plain functions."""

from typer.testing import CliRunner

from assistant.cli import app
from tests.importing import FIXTURES

runner = CliRunner()


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    result = runner.invoke(app, ["import", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "error:" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output


def test_import_then_label_then_datasets():
    result = runner.invoke(app, ["import", str(FIXTURES / "sharegpt.json")])
    assert result.exit_code == 0 and "imported 2" in result.output
    result = runner.invoke(app, ["label", "--source", "logged"])
    assert result.exit_code == 0 and "label job 1: done" in result.output and "dataset ds-" in result.output
    listing = runner.invoke(app, ["datasets"])
    assert "ds-" in listing.output
    assert "base student serves" in runner.invoke(app, ["models"]).output
    rollback = runner.invoke(app, ["models", "rollback"])
    assert rollback.exit_code == 1 and "nothing to roll back" in rollback.output


def test_users_add_list_remove_and_every_command_exists_under_python_m(settings):
    import subprocess
    import sys

    from assistant.settings import REPO_ROOT
    from assistant.users import authenticator, load_users

    assert runner.invoke(app, ["users", "add", "lead", "--password-stdin"], input="correct-horse\n").exit_code == 0
    assert runner.invoke(app, ["users"]).output.strip() == "lead"
    assert authenticator(load_users(settings))("lead", "correct-horse")
    short = runner.invoke(app, ["users", "add", "x", "--password-stdin"], input="abc\n")
    assert short.exit_code == 1 and "at least 8" in short.output
    assert runner.invoke(app, ["users", "remove", "lead"]).exit_code == 0
    assert "no console users" in runner.invoke(app, ["users"]).output
    # `python -m assistant.cli` runs the module as a script: every command must be registered before it runs
    help_text = subprocess.run([sys.executable, "-m", "assistant.cli", "users", "--help"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    assert "add" in help_text and "remove" in help_text
