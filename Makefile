# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# torch is installed first at the pinned version: on a CPU-only machine a local CPU wheel of it may exist,
# and an unpinned install would pull several GB of CUDA packages.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VIDEOS ?= ../shared/data/videos

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.5,<3"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/codecsight watch $(VIDEOS)/intel_one-by-one-person-detection.mp4 --ask "Is there a person?" \
		--compare full --jsonl demo-events.jsonl

test: $(VENV)/.installed
	$(BIN)/python -m pytest

.PHONY: install demo test
