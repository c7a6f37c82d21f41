# micronas set-up and entry points. `make demo` and `make test` set up first; a second
# set-up is a no-op (the venv is rebuilt only when requirements.lock or pyproject.toml change).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.micronas-installed
DEMO   := runs/demo

SCALE  := $(VENV)/.micronas-scale-installed

.PHONY: setup toolchain scale demo test clean

setup: $(STAMP) toolchain

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	  || { echo "micronas needs Python 3.11 (found $$($(PYTHON) --version)); set PYTHON=..."; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

toolchain:
	@scripts/toolchain.sh

# The optional scale extra (Ray: `micronas sweep`, parallel table builds). Not needed by `demo`.
scale: $(SCALE)

$(SCALE): $(STAMP) requirements-scale.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-scale.lock
	$(BIN)/pip check
	touch $(SCALE)

demo: setup
	$(BIN)/micronas search --latency 50ms --ram 256k --out $(DEMO)

# Ray is installed best-effort so CI runs the sweep tests; offline they are skipped (the reason says so).
test: setup
	-@$(MAKE) --no-print-directory scale || echo "note: the scale extra (Ray) did not install; its tests are skipped"
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
