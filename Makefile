# micronas set-up and entry points. `make demo` and `make test` set up first; a second
# set-up is a no-op (the venv is rebuilt only when requirements.lock or pyproject.toml change).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.micronas-installed
DEMO   := runs/demo

.PHONY: setup toolchain demo test clean

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

demo: setup
	$(BIN)/micronas search --latency 50ms --ram 256k --out $(DEMO)

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
