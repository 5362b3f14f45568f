# mipd's set-up and checks (GNU make). Works as root on a fresh Debian 12 machine:
#   make test   installs what is missing (debian-packages.txt, then .venv) and runs every check
#   make check  the fast inner loop: lint, types, import contracts, unit and property tests (~1 min)
#   make demo   the one-machine roaming demo (as root)
#   make clean  removes .venv, stamps and caches

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
# Re-checked when debian-packages.txt changes.
APT_STAMP := .stamp-apt
# Lives inside .venv, so removing .venv also forces a reinstall; re-run when pyproject.toml or the lock changes.
VENV_STAMP := $(VENV)/.stamp-installed
# The pinned, hash-checked dependencies (pip-tools' pip-compile --generate-hashes from pyproject.toml):
# LOCK for the packages (runtime only), DEV_LOCK for .venv (runtime, test and plot extras). `make lock`
# refreshes both from pyproject.toml, keeping every pin that still fits; UPGRADE=1 moves all to the newest.
LOCK := requirements.txt
DEV_LOCK := requirements-dev.txt
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
    --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)

.PHONY: help bootstrap lint test check demo fuzz bench bench-quick deb rpm lock clean

help:
	@echo "make test    set up (Debian packages, .venv) and run ruff, mypy, lint-imports and all tests"
	@echo "make check   the fast loop: ruff, mypy, lint-imports, unit and property tests (-x -q)"
	@echo "make demo    the one-machine roaming demo (as root): mipd demo, its picture in DEMO_PLOT (demo-roaming.png)"
	@echo "make fuzz    fuzz every decoder with atheris, FUZZ_SECONDS (25) each; docs/robustness.md"
	@echo "make bench   the benchmarks (as root, < 10 min): bench/results/latest.json and a table"
	@echo "make bench-quick  the same in < 60 s with small sizes (a smoke test): bench/results/quick.json"
	@echo "make deb     build dist/mipd_<version>_<arch>.deb (debhelper; packaging/README.md)"
	@echo "make rpm     build dist/mipd-<version>-<release>.<arch>.rpm (rpmbuild, packaging/rpm/mipd.spec)"
	@echo "make lock    refresh requirements.txt and requirements-dev.txt from pyproject.toml (UPGRADE=1: newest)"
	@echo "make clean   remove .venv, stamps and caches"

# Install whichever packages of debian-packages.txt are missing; apt-get update only if one is.
$(APT_STAMP): debian-packages.txt
	@packages=$$(sed -e 's/#.*//' debian-packages.txt | tr -s ' \t' '\n\n' | grep -v '^$$'); \
	missing=""; \
	for p in $$packages; do \
	    status=$$(dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null || true); \
	    if [ "$$status" != installed ]; then missing="$$missing $$p"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    if [ "$$(id -u)" -ne 0 ]; then \
	        echo "error: installing Debian packages needs root; run as root or: apt-get install$$missing" >&2; \
	        exit 1; \
	    fi; \
	    echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update; \
	    apt-get install -y $$missing; \
	else \
	    echo "All Debian packages of debian-packages.txt are installed."; \
	fi
	@touch $@

# The apt step is order-only: a changed package list re-runs the apt check, not pip.
# Exactly the locked versions, each checked against its hashes; then mipd itself, editable, adding nothing.
$(VENV_STAMP): pyproject.toml $(DEV_LOCK) | $(APT_STAMP)
	@if [ ! -x $(BIN)/python ]; then \
	    echo "$(SYSTEM_PYTHON) -m venv $(VENV)"; \
	    $(SYSTEM_PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --no-deps -e .
	@touch $@

bootstrap: $(VENV_STAMP)

lint: bootstrap
	$(BIN)/ruff check mipd tests fuzz bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test: lint
	$(BIN)/pytest tests

check: lint
	$(BIN)/pytest -x -q tests/unit tests/property

# The one-machine roaming demo (as root); `$(BIN)/mipd demo --help` lists its options. It also draws the
# roaming (ping round trips, moves, lost pings, registration round trips) into DEMO_PLOT.
DEMO_PLOT ?= demo-roaming.png
demo: bootstrap
	$(BIN)/mipd demo --plot $(DEMO_PLOT)

# Every decoder under atheris for FUZZ_SECONDS each (15 harnesses: about 7.5 minutes at 25);
# working corpora and any crash input go to FUZZ_WORK. `make test` runs a short fixed run of each.
FUZZ_SECONDS ?= 25
FUZZ_WORK ?= /tmp/mipd-fuzz
fuzz: bootstrap
	$(BIN)/python -m fuzz.campaign --seconds $(FUZZ_SECONDS) --work $(FUZZ_WORK)

# Registration rate (C load generator; C and Python floors), binding scale, kernel data path under
# a real kernel (user-mode Linux or QEMU: tests/support/realkernel.py), handoff, footprint (as root). bench/__main__.py says what each part measures.
bench: bootstrap
	$(BIN)/python -m bench

bench-quick: bootstrap
	$(BIN)/python -m bench --quick

# The packages, built outside the tree from a copy of it (packaging/build.py); only DIST is written.
# They need Debian's tools (debhelper, rpm), not .venv.
DIST ?= dist
deb: | $(APT_STAMP)
	$(SYSTEM_PYTHON) packaging/build.py deb --output $(DIST)

rpm: | $(APT_STAMP)
	$(SYSTEM_PYTHON) packaging/build.py rpm --output $(DIST)

# pip-compile runs in a virtual environment of its own, so that pip-tools is in neither lock nor .venv.
lock:
	@[ -x $(LOCK_VENV)/bin/pip-compile ] || { $(SYSTEM_PYTHON) -m venv $(LOCK_VENV) && \
	    $(LOCK_VENV)/bin/python -m pip install --quiet $(PIP_TOOLS); }
	$(PIP_COMPILE) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra test --extra plot --output-file $(DEV_LOCK) pyproject.toml
	@echo "Refreshed $(LOCK) and $(DEV_LOCK); make bootstrap installs them, make check checks them."

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(APT_STAMP) .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache \
	    build dist *.egg-info demo-roaming.png
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
