# The data scientist's front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/demo
HORIZON ?= 90
# CLV horizon of make score, days (empty: the setting CHURN_CLV_HORIZON_DAYS, default 365)
CLV_HORIZON ?=
AS_OF ?=
PORT ?= 8000
CUSTOMERS ?= 20000
SEED ?= 42
# make simulate: customers and churn horizon (days) of the simulated year, drift injected mid-year
SIM_CUSTOMERS ?= 1500
SIM_HORIZON ?= 30
DRIFT ?= rename
NAME ?= crm
ADMIN ?=
# make api-key SCOPE=scores|viewer|admin (empty: scores)
SCOPE ?=
FORCE ?=
VERSION ?=
UI_PORT ?= 5000
# make export OUT=folder (default: CHURN_EXPORT_DIR); make notify WEBHOOK_URL=... (default:
# CHURN_WEBHOOK_URL; the secret only ever from CHURN_WEBHOOK_SECRET, not the command line).
OUT ?=
WEBHOOK_URL ?=
# ENGINE=dask runs train/score/features on Dask (DASK_SCHEDULER=tcp://host:8786, or a local
# cluster of worker processes when empty); see README "Scaling out".
ENGINE ?=
DASK_SCHEDULER ?=
ENGINE_FLAGS = $(if $(ENGINE),--engine $(ENGINE)) $(if $(DASK_SCHEDULER),--dask-scheduler $(DASK_SCHEDULER))
DEMO_KEY_FILE := var/demo-key.txt

export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

# make lock runs uv from .venv when it is installed there, else from PATH.
UV ?= $(if $(wildcard $(BIN)/uv),$(BIN)/uv,uv)
LOCK := requirements.lock
LATEST_VENV ?= .venv-latest

.PHONY: help install lock data train score export notify monitor serve demo api-key revoke-key test test-long test-fast test-latest lint typecheck bench clean catalogue features evaluate promote report mlflow-ui retrain simulate

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: DATA=$(DATA) HORIZON=$(HORIZON) CLV_HORIZON=$(CLV_HORIZON) AS_OF=$(AS_OF) PORT=$(PORT) MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) ENGINE=$(ENGINE) DASK_SCHEDULER=$(DASK_SCHEDULER)"

# Every dependency comes from the hash-pinned lock; the project itself is added without
# dependencies, and `pip check` then fails if pyproject.toml asks for something the lock lacks
# (run `make lock`).
$(BIN)/.installed: $(LOCK) pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found; install it or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $@

install: $(BIN)/.installed ## create .venv and install the locked dependencies and the project

# Pins already in the lock are kept (quick, and a new dependency adds only its own tree);
# UPGRADE=1 moves every pin to the newest release pyproject.toml allows.
lock: ## refresh requirements.lock (hashes, Python 3.11, linux) from pyproject.toml; UPGRADE=1 upgrades all
	@command -v $(UV) >/dev/null || { echo "error: uv not found; run make install (it puts uv in $(VENV)) or pip install uv" >&2; exit 2; }
	$(UV) pip compile pyproject.toml --extra dev --extra bench --generate-hashes \
		--python-version 3.11 --python-platform linux --custom-compile-command "make lock" \
		--no-emit-index-url --no-emit-find-links --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)
	@! grep -n '://' $(LOCK) || { echo "error: $(LOCK) names a URL; it must hold names, versions and hashes only" >&2; exit 1; }

data: install ## write the seeded demo data set (DATA, CUSTOMERS, SEED)
	$(BIN)/python -m training data --out $(DATA) --customers $(CUSTOMERS) --seed $(SEED) --horizon $(HORIZON)

train: install ## build features, fit CLV + churn, log to MLflow, register, promote if the gate passes (FORCE=1 to force)
	$(BIN)/python -m training train --data $(DATA) --horizon $(HORIZON) $(if $(FORCE),--force) $(ENGINE_FLAGS)

score: install ## score every customer with the champion and keep the snapshot the server reads (by AS_OF, last 12)
	$(BIN)/python -m training score --data $(DATA) --horizon $(HORIZON) $(if $(CLV_HORIZON),--clv-horizon $(CLV_HORIZON)) $(if $(AS_OF),--as-of $(AS_OF)) $(ENGINE_FLAGS)

export: install ## write the latest worklist as CSV and JSON Lines into OUT (default var/export)
	$(BIN)/python -m training export $(if $(OUT),--out $(OUT))

notify: install ## POST the latest snapshot's risers to WEBHOOK_URL, signed (CHURN_WEBHOOK_SECRET)
	$(BIN)/python -m training notify $(if $(WEBHOOK_URL),--url '$(WEBHOOK_URL)')

# Exit code 0: no alert; 3: alerts fired (WARNING lines, gauges, webhook); 2: bad input.
monitor: install ## realized + estimated performance, drift and alerts of every kept snapshot -> var/scores/monitoring
	$(BIN)/python -m training monitor --data $(DATA)

features: install ## build the point-in-time training and validation frames into var/features
	$(BIN)/python -m training features --data $(DATA) --horizon $(HORIZON) $(ENGINE_FLAGS)

evaluate: install ## metrics of the champion (or VERSION=n) on DATA, next to the baselines and oracle
	$(BIN)/python -m training evaluate --data $(DATA) --horizon $(HORIZON) $(if $(VERSION),--version $(VERSION))

promote: install ## make VERSION=n the champion if it passes the gate on DATA (FORCE=1 skips the gate)
	$(BIN)/python -m training promote --data $(DATA) --horizon $(HORIZON) --version $(VERSION) $(if $(FORCE),--force)

retrain: install ## the loop for cron/systemd: train, gate, score, reload the server, monitor; exit codes in docs/monitoring.md
	$(BIN)/python -m training retrain --data $(DATA) --horizon $(HORIZON) $(ENGINE_FLAGS)

simulate: install ## a simulated year: weekly make retrain on demo data, drift mid-year (SIM_CUSTOMERS, DRIFT)
	$(BIN)/python -m training simulate --customers $(SIM_CUSTOMERS) --seed $(SEED) --horizon $(SIM_HORIZON) --drift $(DRIFT)

report: install ## fetch the HTML report of the champion (or VERSION=n) into var/report
	$(BIN)/python -m training report $(if $(VERSION),--version $(VERSION))

# One worker and no job runner: MLflow 3 defaults to 4 uvicorn workers plus a job runner with
# 7 huey consumers (GenAI scorers and trace jobs we never use): 15 processes and 2.6-3.1 GiB
# RSS, against 2 processes (launcher + worker) and 0.5 GiB this way.
mlflow-ui: install ## MLflow UI on 127.0.0.1:UI_PORT (runs, registered versions, reports)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) \
	  --host 127.0.0.1 --port $(UI_PORT) --workers 1

serve: install ## serve the champion and the latest snapshot on 127.0.0.1:PORT
	$(BIN)/python -m serving --port $(PORT)

api-key: install ## create an API key for client NAME (SCOPE=scores|viewer|admin, ADMIN=1 = SCOPE=admin); printed once, last line
	@$(BIN)/python -m serving.keys create --name $(NAME) $(if $(SCOPE),--scope $(SCOPE)) $(if $(ADMIN),--admin)

revoke-key: install ## remove the API key NAME (the server refuses it at once; its web sessions end)
	@test "$(origin NAME)" != file || { echo "error: name the key to revoke: make revoke-key NAME=..." >&2; exit 2; }
	@$(BIN)/python -m serving.keys revoke $(NAME)

demo: install data train score ## the whole job on the demo data, then serve with a printed example request
	@mkdir -p var
	@$(BIN)/python -m serving.keys create --name demo | tail -n 1 > $(DEMO_KEY_FILE)
	@echo
	@echo "Serving on http://127.0.0.1:$(PORT) (Ctrl-C stops). Try, from another terminal:"
	@echo
	@echo "  curl -s -X POST http://127.0.0.1:$(PORT)/v1/scores \\"
	@echo "    -H 'X-API-Key: $$(cat $(DEMO_KEY_FILE))' -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"customer_ids\": [\"C0000001\", \"C0000002\", \"nobody\"]}'"
	@echo
	@echo "The retention workspace: open http://127.0.0.1:$(PORT)/ in a browser and sign in with the"
	@echo "same key (make api-key NAME=anna SCOPE=viewer makes one that can read but not administer)."
	@echo
	$(BIN)/python -m serving --port $(PORT)

# pytest exits 5 when no test ran (nothing collected, or all deselected): make treats it as a
# failure like any other non-zero status, so an empty run never passes.
# The suite runs in TEST_WORKERS processes (pytest-xdist; default: the cores, at most 4), each
# test file on one of them, so a module's fixtures (a trained demo, a server) are built once;
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ "$$n" -gt 4 ] && n=4; echo $$n)
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
test: install ## the whole test suite except the simulated year (make test-long); CI runs both
	$(BIN)/python -m pytest -m "not long" --durations=15 $(XDIST)

test-long: install ## the simulated year: 52 weekly make retrain runs with a drift injected mid-year (about 6 minutes)
	$(BIN)/python -m pytest -m long

test-fast: install ## the tests not marked slow (no 20k-customer training, no Dask): under 2 minutes
	$(BIN)/python -m pytest -m "not slow and not long" $(XDIST)

test-latest: ## the suite on the newest releases pyproject.toml allows, in .venv-latest, without the lock (not run by CI)
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found; install it or pass PYTHON=/path/to/python3.11" >&2; exit 2; }
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,bench]'
	$(LATEST_VENV)/bin/python -m pip list --format=freeze
	$(LATEST_VENV)/bin/python -m pytest -p no:cacheprovider

lint: install ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy: strict on features/ and models/, default checks on training/ serving/ bench/
	$(BIN)/mypy

bench: install ## run the benchmarks and print figures and ratios
	$(BIN)/python -m bench

# The recorded outcomes (var/outcomes.db) are people's work, not generated: clean keeps them.
clean: ## remove generated data, scores, MLflow store and caches (keeps .venv and var/outcomes.db)
	rm -rf data mlruns mlartifacts mlflow.db .pytest_cache .ruff_cache .hypothesis
	@if [ -d var ]; then find var -mindepth 1 -maxdepth 1 ! -name outcomes.db ! -name outcomes.db.lock -exec rm -rf {} +; fi

catalogue: install ## regenerate docs/feature-catalogue.md from the code
	$(BIN)/python -m features > docs/feature-catalogue.md
