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

.PHONY: install run test lint format catalog import train trending retrain simulate evaluate \
	bench-prepare bench-load bench-ingest backup restore rebuild-user-tables clean

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

# /metrics adds up every worker's samples from one shared folder, emptied at each start.
METRICS_DIR ?= data/metrics
run: import data/artifacts/current
	rm -rf $(METRICS_DIR) && mkdir -p $(METRICS_DIR)
	PROMETHEUS_MULTIPROC_DIR=$(abspath $(METRICS_DIR)) \
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

# Jobs as the scheduler runs them (advisory lock, recorded in job_runs).
retrain: | $(INSTALLED)
	$(PY) -m ml.retrain

# Measurement: realistic logs into the database, offline evaluation, the load benchmark.
simulate: import
	$(PY) -m ml.simulate --users 5000 --events 200000

evaluate: | $(INSTALLED)
	$(PY) -m ml.evaluate --out reports

bench-prepare: | $(INSTALLED)
	$(PY) -m bench.prepare --dir data/bench

bench-load: bench-prepare
	$(PY) -m bench.load --dir data/bench --workers $(WORKERS)

# Operations: a backup that works at any number of users, restore into an empty database
# (the per-user tables rebuilt from the log), and that rebuild alone.
backup: | $(INSTALLED)
	$(PY) -m database.backup dump --dir $(or $(BACKUP_DIR),backups/$(shell date -u +%Y%m%dT%H%M%SZ))

restore: | $(INSTALLED)
	$(if $(BACKUP_DIR),,$(error set BACKUP_DIR to the folder of a backup))
	$(PY) -m database.backup restore --dir $(BACKUP_DIR)

rebuild-user-tables: | $(INSTALLED)
	$(PY) -m database.user_tables rebuild

clean:
	rm -rf $(VENV) data/processed data/pgdata
