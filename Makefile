# Regard: one command to run the demo, one to run the tests.
#   make demo   create .venv, install pinned dependencies, train + translate the demo
#   make test   same install, then the test suite
#   make bench  Regard against Joey NMT and OpenNMT-py on the same model (docs/PERFORMANCE.md)
#   make bench-scale  the cost of training against corpus size, 0.2M to 20M pairs (docs/PERFORMANCE.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test bench bench-scale clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/regard demo --out runs/demo

# Debian's headless Chromium for tests/test_browser.py (Playwright drives it; it downloads no browser).
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: install browser
	$(BIN)/python -m pytest

# Regard vs Joey NMT and OpenNMT-py, side by side (peers installed into ~/.cache/regard/bench; see
# docs/PERFORMANCE.md). Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--steps 30 --limit 100".
bench: install
	$(BIN)/python -m bench.peers $(BENCH_ARGS)

# How Regard's memory, start-up and speed grow from 0.2M to 20M training pairs, Joey NMT beside it
# (corpora built under ~/.cache/regard/bench/scale; several GB of disk; docs/PERFORMANCE.md).
bench-scale: install
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

clean:
	rm -rf runs .pytest_cache
