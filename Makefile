# The two commands of the quick start: `make demo` and `make test`.  Both create their own .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The data directory: the shared read-only datasets when they sit beside the checkout, else the
# user's choice (CONVNP_DATA) or convnp's per-user cache folder.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/mnist),)
export CONVNP_DATA ?= $(SHARED_DATA)
endif

.PHONY: demo test test-fast lint fuzz bench accuracy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to the CPU build (the dev extra); install it first so nothing pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo needs only the tools extra (progress bars, figures, images, the bundled digits), not torch.
TOOLS_STAMP := $(VENV)/.installed-tools
$(TOOLS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[tools]'
	touch $(TOOLS_STAMP)

demo: $(TOOLS_STAMP)
	$(BIN)/python -m convnp.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# The loop while editing: the suite without the tests marked slow, stopping at the first failure.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -x -m "not slow"

# pyflakes, pycodestyle, import order and a few bugbear rules ([tool.ruff] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .

# The long run of the hardening tests: many fuzz examples per parser (fresh randomness) and many SIGKILLs.
FUZZ_EXAMPLES ?= 2000
KILLS ?= 40
fuzz: $(STAMP)
	CONVNP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -n 2 tests/test_fuzz.py
	CONVNP_KILLS=$(KILLS) $(BIN)/python -m pytest -s tests/test_crash_consistency.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_lenet.py

# Train every accuracy task with its default recipe and print the table (several minutes).
accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
