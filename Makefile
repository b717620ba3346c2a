# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the package with the tested versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m normalizingflows demo --out demo_out

# The suite runs as TEST_SESSIONS pytest sessions of 2 workers each, over every n-th test file:
# a worker's memory grows with each TF/Keras test it runs and is freed only when its session
# ends. In one session of the whole suite both workers reached 11-13 GB, and on 2026-12-07 the
# OOM killer of a 24 GB machine stopped one at 92% of the run.
TEST_SESSIONS ?= 3

test: $(STAMP)
	@set -e; for i in $$(seq 0 $$(($(TEST_SESSIONS) - 1))); do \
	  files=$$(ls tests/test_*.py | awk -v n=$(TEST_SESSIONS) -v i=$$i '(NR - 1) % n == i'); \
	  echo "pytest session $$((i + 1)) of $(TEST_SESSIONS)"; \
	  $(PY) -m pytest -n 2 -q $$files; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo_out .pytest_cache
