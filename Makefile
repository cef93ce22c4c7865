# Newcomer entry points. Both create (or refresh) .venv and install the three packages editable.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test demo lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) lerobot_policy_rewact/pyproject.toml lerobot_policy_actvantage/pyproject.toml rewact_tools/pyproject.toml
	$(PY) -m pip install --quiet \
		-e "./lerobot_policy_rewact[test,timm]" \
		-e "./lerobot_policy_actvantage[test,timm]" \
		-e "./rewact_tools[test,scripts]" \
		"ruff>=0.5"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	OMP_NUM_THREADS=1 $(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo_output
