# Two commands for a fresh clone: `make all` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Inside this workplace the official data files sit in ../shared/data; elsewhere medmnist downloads.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/bloodmnist.npz),)
export MEDMNIST_MIRROR ?= $(SHARED_DATA)
endif
export PYTHONUNBUFFERED := 1

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: all test venv data train notebooks bench

# The main job: every notebook executed in order, in place, in the resolved profile, then the
# README's results table regenerated from results/.
all: venv data notebooks
	$(PY) -m utils.report

# Unit tests, then every notebook under nbval, all in the smoke profile (outputs to build/smoke/).
test: venv data
	PROFILE=smoke $(PY) -m pytest -q tests
	PROFILE=smoke $(PY) -m pytest -q --nbval-lax $(NOTEBOOKS)

notebooks: venv data
	for nb in $(NOTEBOOKS); do \
	  $(PY) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
	touch $@

# Find and verify the data (MD5 from medmnist.INFO); prints where it is.
data: venv
	$(PY) -m utils.data

# DeepEfficientNet alone in the resolved profile ($$PROFILE, else full on CUDA, cpu otherwise).
train: venv data
	$(PY) -m utils.train --model deep_efficientnet --dataset bloodmnist

bench: venv data
	$(PY) -m utils.bench
