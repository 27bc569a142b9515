# README's two commands: `make run` (set up, open the chat) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build. Override TORCH_SPEC / PIP_ARGS
# to use another build, e.g. a CPU wheel index of your own (see README).
TORCH_SPEC ?= torch==2.13.0
PIP_ARGS ?=

.PHONY: run test setup browser bench sample wheel clean

run: setup
	$(BIN)/assistant serve

test: setup browser
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet --disable-pip-version-check $(PIP_ARGS) -e ".[train,eval,dev]"
	@touch $(STAMP)

# The browser test drives Debian's chromium. Installed here when we can (root, apt); otherwise that
# one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: the browser test will be skipped (apt-get install chromium)"; fi; }

bench: setup
	$(BIN)/python -m eval.bench_chat

sample:
	$(PYTHON) data/generate_sample.py

# The installable package (sample company and metric modules inside): dist/support_assistant-*.whl.
# `pip install "dist/support_assistant-0.1.0-py3-none-any.whl[train,eval]"` after the CPU torch (README).
wheel: setup
	$(BIN)/python -m build --wheel --outdir dist .

clean:
	rm -rf $(VENV) .assistant .pytest_cache .hypothesis tests/artifacts build dist
