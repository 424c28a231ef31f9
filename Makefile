# Two entry points for a fresh machine (both idempotent):
#   make repro   create .venv, install everything, run the whole DVC pipeline (`dvc repro`)
#   make test    create .venv, install everything, run the default test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# DVC stage commands call `python`: make it the venv's
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-slow test-all lint bench vendor-vega

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# facenet-pytorch pins torch<2.3; its code runs on torch 2.14, so install it without deps
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0
	# Debian's chromium for the report's browser test (driven by playwright, never a downloaded
	# browser). Idempotent: apt runs only when chromium is missing; CI runs as root on this image.
	# Elsewhere (no root) it only warns, and the browser tests skip saying why.
	command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
		echo "warning: could not install chromium: the report's browser tests will skip"
	touch $@

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -m "not slow" --durations=20

test-slow: setup
	$(BIN)/python -m pytest -m slow --durations=20

test-all: setup
	$(BIN)/python -m pytest --durations=20

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/bench_prepare_cache.py

# rebuild vendor/vega/dvc_plots.html (committed) from npm at the versions pinned in the script
vendor-vega:
	vendor/vega/update.sh
