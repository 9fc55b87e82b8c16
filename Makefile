# Two commands take a fresh clone to a trained model and a green test run:
#   make train   make test
# Everyday work: make test-fast (lint + the tests not marked slow, on 2 workers; 11-20 minutes on 2 cores).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: train test test-fast test-heavy lint gradcheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,experiments]"
	touch $(STAMP) $(TRAIN_STAMP)

# Training needs jnn and the generator of its default data set (MNIST-1D) only, not the test extra.
TRAIN_STAMP := $(VENV)/.installed-train
$(TRAIN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[mnist1d]"
	touch $(TRAIN_STAMP)

train: $(TRAIN_STAMP)
	$(VENV)/bin/jnn train

gradcheck: $(TRAIN_STAMP)
	$(VENV)/bin/jnn gradcheck

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q -m "not heavy" -n 2 --durations=15

test-heavy: $(STAMP)
	$(PY) -m pytest -q -m heavy -n 2

test-fast: lint
	$(PY) -m pytest -q -m "not slow and not heavy" -n 2

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
