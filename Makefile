# Newcomer entry points. Two LeRobot platforms from one tree, each in its own virtual environment:
#   make test / make demo                  LeRobot 0.6.1 on Python 3.12 in .venv (the default)
#   make test LEROBOT=0.4.4                LeRobot 0.4.4 on Python 3.11/3.10 in .venv-lerobot0.4.4
# Both install the three packages editable with their test and script extras. PYTHON=/path/to/python
# picks the interpreter; otherwise the first working one of the platform's versions is used.
LEROBOT ?= 0.6.1
PYTEST_ARGS ?=

ifeq ($(LEROBOT),0.6.1)
VENV ?= .venv
PYTHON_VERSIONS := 3.12
LEROBOT_REQUIREMENT := lerobot[training,evaluation]==0.6.1
# robocandywrapper 0.2.18 (the newest) pins lerobot<0.5 but works on 0.6.1 through rewact_tools'
# import aliases, so it is installed without its dependencies (README: "pip check").
CANDYWRAPPER_INSTALL := $(VENV)/bin/python -m pip install --quiet --no-deps robocandywrapper==0.2.18
else ifeq ($(LEROBOT),0.4.4)
VENV ?= .venv-lerobot0.4.4
PYTHON_VERSIONS := 3.11 3.10
LEROBOT_REQUIREMENT := lerobot==0.4.4
# rewact_tools depends on robocandywrapper itself below Python 3.12.
CANDYWRAPPER_INSTALL := @:
else
$(error LEROBOT=$(LEROBOT) is not a supported platform; use LEROBOT=0.6.1 (default) or LEROBOT=0.4.4)
endif

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The interpreter: PYTHON if given, else pythonX.Y on PATH, else pyenv's or the system's pythonX.Y,
# each checked to run and to be the right version (a pyenv shim of a version that is not active fails).
FIND_PYTHON = for candidate in $(PYTHON) \
		$(foreach v,$(PYTHON_VERSIONS),python$(v) $(wildcard $(HOME)/.pyenv/versions/$(v)*/bin/python$(v)) \
		/usr/local/bin/python$(v) /usr/bin/python$(v)); do \
	  if "$$candidate" -c 'import sys; assert "%d.%d" % sys.version_info[:2] in "$(PYTHON_VERSIONS)".split()' \
	      >/dev/null 2>&1; then command -v "$$candidate"; exit 0; fi; \
	done; \
	echo "error: LeRobot $(LEROBOT) needs Python $(PYTHON_VERSIONS), and none was found (tried PYTHON," \
	  "python$(firstword $(PYTHON_VERSIONS)) on PATH, ~/.pyenv/versions, /usr/local/bin, /usr/bin)." >&2; \
	echo "Install it (e.g. 'pyenv install $(firstword $(PYTHON_VERSIONS))', 'uv python install" \
	  "$(firstword $(PYTHON_VERSIONS))' or your system's python$(firstword $(PYTHON_VERSIONS))-venv" \
	  "package), pass PYTHON=/path/to/python$(firstword $(PYTHON_VERSIONS)), or use the other platform:" \
	  "make $(MAKECMDGOALS) LEROBOT=$(if $(filter 0.6.1,$(LEROBOT)),0.4.4,0.6.1)" >&2; \
	exit 1

.PHONY: install test demo lint clean

$(PY):
	@interpreter=$$($(FIND_PYTHON)) && echo "Creating $(VENV) with $$interpreter (LeRobot $(LEROBOT))" \
	  && "$$interpreter" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) Makefile lerobot_policy_rewact/pyproject.toml lerobot_policy_actvantage/pyproject.toml rewact_tools/pyproject.toml
	$(PY) -m pip install --quiet \
		"$(LEROBOT_REQUIREMENT)" \
		-e "./lerobot_policy_rewact[test,timm]" \
		-e "./lerobot_policy_actvantage[test,timm]" \
		-e "./rewact_tools[test,scripts]" \
		"ruff>=0.5"
	$(CANDYWRAPPER_INSTALL)
	@# LeRobot installs torchcodec, which cannot load without system FFmpeg libraries; then LeRobot
	@# logs pages of tracebacks whenever a dataset opens. Without it LeRobot quietly decodes with PyAV.
	@if $(PY) -m pip show --quiet torchcodec >/dev/null 2>&1 && ! $(PY) -c "import torchcodec" >/dev/null 2>&1; then \
	  echo "torchcodec cannot load here (no system FFmpeg libraries): removing it, LeRobot decodes with PyAV"; \
	  $(PY) -m pip uninstall --quiet --yes torchcodec; fi
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	OMP_NUM_THREADS=1 $(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .venv .venv-lerobot0.4.4 demo_output
