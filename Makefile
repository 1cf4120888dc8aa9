# The two README commands, `make demo` and `make test`, set everything up themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test lint pytest demo bench clean

setup: $(STAMP)

# Rebuilt only when the inputs change, so a second `make setup` takes seconds.
# torch first, pinned: a bare `torch` requirement would take the newest build, from PyPI a
# multi-GB CUDA one. Which build ==2.13.0 gets is the index's choice (README: PIP_EXTRA_INDEX_URL).
$(STAMP): setup.py setup.cfg $(CONSTRAINTS) requirements/ros.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) --upgrade pip setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements/ros.txt
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

pytest: setup
	$(PY) -m pytest -q

test: lint pytest

demo: setup
	$(PY) -m m2vae_training.demo

# Every benchmark of BENCHMARKS.md with its default size (about 6.5 hours on 2 cores, most of it
# train_eval: three objectives × three seeds; interrupted, a rerun continues its finished runs).
BENCHES := train_step split_digits sim_speed dataset_build decode_speed node_latency train_eval
bench: setup
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) demo_out build install log
