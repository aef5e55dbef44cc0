# Development entry points. `make run` and `make test` work on a fresh Debian 12 machine
# as root: they install what they need (Debian packages, then a virtualenv from PyPI).

PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
# What building systemd-python from PyPI and creating the venv need on Debian.
APT_PACKAGES := python3 python3-venv python3-dev gcc pkg-config libsystemd-dev
RUN_DIR := .run/server
PYTEST_ARGS ?= -n auto

.PHONY: deps run test clean

deps: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml requirements-dev.txt
	@missing=$$(for package in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . -r requirements-dev.txt
	touch $@

# Runs the server in the foreground on the shipped example config, in a scratch
# server directory so that state and logs stay out of etc/.
run: deps
	mkdir -p $(RUN_DIR)
	cp etc/zato-daemon/*.conf $(RUN_DIR)/
	$(BIN)/zato-daemon start $(RUN_DIR) --fg

test: deps
	$(BIN)/pytest $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) .run build *.egg-info
