# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs, and runs the main job end to end
#   make test   creates .venv, installs, and runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
ROBUST := $(VENV)/bin/robust
# torch/torchvision pinned to the release this project is tested with; CUDA builds work the same
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo lint test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,autoattack,corruptions]'
	touch $@

demo: install
	$(ROBUST) run experiments/quick.toml

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# the suite in 2 worker processes (pytest-xdist), one torch thread each, a test file per worker at a time
TEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs/quick
