# The README's commands. `make demo` installs everything and runs the whole job;
# `make test` runs the tests. Both work on a fresh Linux machine with Python 3.11+.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-python setup-browser demo test lint clean

setup: setup-python setup-browser

# The CPU build of PyTorch goes first: a bare "torch" requirement with no torch
# installed pulls a multi-GB CUDA build. tinysoundfont goes in without its pyaudio
# dependency, which needs portaudio headers and is only used for live playback.
setup-python: $(BIN)/abcrnn

$(BIN)/abcrnn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps tinysoundfont==0.3.7
	$(BIN)/pip install --quiet -e '.[test,web,study,notebooks,comet]'
	touch $@

# Sheet music in the web page (abcjs from npm) and the browser for its end-to-end test.
setup-browser:
	npm ci --ignore-scripts --no-audit --no-fund --silent
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
				|| echo "could not install chromium: the browser test will be skipped"; \
		else \
			echo "chromium is not installed: the browser test will be skipped" \
			     "(sudo apt-get install chromium)"; \
		fi; \
	fi

demo: setup-python
	$(BIN)/abcrnn demo

test: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

clean:
	rm -rf $(VENV) node_modules
