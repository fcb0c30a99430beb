# Two commands on a fresh machine:  `make run`  and  `make test`.
# Every pip call applies constraints.txt, so the same versions install everywhere
# (and torch stays the CPU build from local disk instead of a multi-GB CUDA download).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
PRECISE := $(BIN)/precise

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test install data repro lock clean-state help

help:
	@echo "make run    set up, generate the synthetic world if landing/ is empty, ingest, dvc repro"
	@echo "make test   set up and run the test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the package list or the lock changes.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The data day flows from landing/ into contract partitions (dvc add + push at ingest).
data: install
	@if [ -z "$$(ls -A landing 2>/dev/null)" ]; then $(PRECISE) data synth; \
	 else echo "landing/ has drops: not generating the synthetic world"; fi
	$(PRECISE) ingest --all

repro: data
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

run: repro
	@echo
	@echo "Results:"
	@echo "  contract partitions   data/events/  data/catalog/  (rejects: data/rejects/)"
	@echo "  validation            data/validation/manifest.json  (per day: data/validation/results/)"
	@echo "  Data Docs             var/gx/gx/uncommitted/data_docs/local_site/index.html"
	@echo "  sequences             data/sequences/  (metrics: data/metrics/sequences.json)"
	@echo "  pipeline status       $(BIN)/dvc status ; $(BIN)/dvc metrics show"

test: install
	CI=$${CI:-} $(BIN)/python -m pytest

# Refresh constraints.txt from a clean environment with the top-level pins of pyproject.toml.
lock:
	rm -rf /tmp/precise-lock && $(PYTHON) -m venv /tmp/precise-lock
	/tmp/precise-lock/bin/pip install --quiet "torch==2.13.0" .[test]
	{ head -2 constraints.txt; /tmp/precise-lock/bin/pip freeze --exclude precise | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Forget derived state (keeps landing/, the partitions and the DVC remote).
clean-state:
	rm -rf var data/sequences
