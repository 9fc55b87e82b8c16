# Two commands take a fresh clone to a trained model and a green test run:
#   make train   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: train test gradcheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,experiments]"
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/jnn train

gradcheck: $(STAMP)
	$(VENV)/bin/jnn gradcheck

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
