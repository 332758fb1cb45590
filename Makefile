# Two commands matter: `make demo` and `make test`. Both set up what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint soak bench system-deps browser clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "kiosk needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing kiosk and its dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh zbar

browser:
	@bash scripts/system-deps.sh chromium

demo: system-deps $(STAMP)
	@$(BIN)/kiosk demo $(DEMO_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check kiosk tests bench
	@$(BIN)/mypy

# The long runs (100 kills, long fuzz, full schemathesis) are marked slow and belong to `make soak`.
test: system-deps browser $(STAMP) lint
	@. scripts/postgres-env.sh && $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

soak: system-deps browser $(STAMP)
	@. scripts/postgres-env.sh && KIOSK_SOAK=1 $(BIN)/python -m pytest -q -s -m slow tests $(PYTEST_ARGS)
	@. scripts/postgres-env.sh && $(BIN)/python bench/fuzz.py

bench: system-deps $(STAMP)
	@. scripts/postgres-env.sh && for b in decode door ingest query sync; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
