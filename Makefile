# Two commands do all the set-up: `make run` (service with demo data) and `make test`.
# Both create the virtual environment and install dependencies when pyproject.toml changed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# The demo catalog: the real Amazon India sample shipped in the repo (a file or a folder of CSVs).
DEMO_RAW ?= data/raw/amazon-in-sample
PROCESSED := data/processed/Amazon-Products-Optimized.csv

.PHONY: install run test lint format catalog import train trending bench-ingest clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(PROCESSED): $(DEMO_RAW) | $(INSTALLED)
	$(PY) -m ml.clean_catalog --input $(DEMO_RAW) --output $@

catalog: $(PROCESSED)

import: $(PROCESSED)
	$(PY) -m database.csv_importer --csv $(PROCESSED)

# Models are trained on first run; retrain any time with `make train`.
data/artifacts/current: | $(INSTALLED)
	$(MAKE) import
	$(PY) -m ml.train --no-progress

train: import
	$(PY) -m ml.train

trending: import
	$(PY) -m ml.update_trending

run: import data/artifacts/current
	$(PY) -m uvicorn main:app --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(INSTALLED)
	$(PY) -m pytest -q

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench-ingest: import
	$(PY) -m bench.ingest_throughput

clean:
	rm -rf $(VENV) data/processed data/pgdata
