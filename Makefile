# Development entry points. `make run` and `make test` work on a fresh Debian 12 machine
# as root: they install what they need (Debian packages, then a virtualenv from PyPI).

PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
# What building systemd-python from PyPI and creating the venv need on Debian.
APT_PACKAGES := python3 python3-venv python3-dev gcc pkg-config libsystemd-dev
# The same libraries as Debian 12 packages them (gevent 22.10, python-daemon 2.3, ...):
# the suite runs a second time on these, since they are what the .deb will use.
DEBIAN_PYTHON_PACKAGES := python3-gevent python3-systemd python3-daemon python3-setproctitle \
	python3-httptools python3-prometheus-client python3-pytest python3-pytest-xdist python3-requests python3-redis
# What `make deb` needs besides the Build-Depends, which `apt-get build-dep` reads from
# debian/control itself: dch (for DEB_VERSION) and lintian.
DEB_TOOLS := build-essential devscripts lintian
# Tools the tests drive: tmux is the real terminal of `zato-daemon top`'s test; the cluster's
# tests start redis-server themselves; the dump sinks' test runs a systemd-journald of its own.
TEST_TOOLS := tmux redis-server systemd
# What booting the system tests' Debian 12 container needs.
SYSTEM_TEST_PACKAGES := systemd-container debootstrap debian-archive-keyring gpgv wget iproute2
# `make deb DEB_VERSION=0.1.0+test1` builds the tree under another version (upgrade tests).
DEB_VERSION ?=
RUN_DIR := .run/server
# loadgroup: the system tests share one booted container, so they run in one xdist worker
# (their modules are marked xdist_group('system')). Not in setup.cfg: the package's build runs
# pytest with that file and no xdist.
PYTEST_ARGS ?= -n auto --dist loadgroup

.PHONY: deps debian-deps deb-deps system-deps test-tools run test test-pypi test-debian deb clean

# Installs the Debian packages named in $(1) that are not installed yet.
apt_install = missing=$$(for package in $(1); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

deps: $(VENV)/.installed

debian-deps:
	@$(call apt_install,$(APT_PACKAGES) $(DEBIAN_PYTHON_PACKAGES))

$(VENV)/.installed: setup.cfg pyproject.toml requirements-dev.txt
	@$(call apt_install,$(APT_PACKAGES))
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

# The whole suite: unit and integration tests on current PyPI releases, then everything
# again on Debian 12's packages, with the system tests: the .deb installed in a booted
# Debian 12 container (they need no venv, and one run of them is enough).
test: test-pypi test-debian

test-pypi: deps test-tools
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit tests/integration

test-debian: debian-deps system-deps test-tools
	$(PYTHON) -m pytest $(PYTEST_ARGS) -p no:cacheprovider tests

test-tools:
	@$(call apt_install,$(TEST_TOOLS))

system-deps: deb-deps
	@$(call apt_install,$(SYSTEM_TEST_PACKAGES))

# The Build-Depends as debian/control declares them, nothing added: the build sees what a
# Debian builder's would (debian/rules keeps pytest plugins that happen to be installed out).
deb-deps:
	@$(call apt_install,$(DEB_TOOLS))
	@dpkg-checkbuilddeps 2>/dev/null || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get build-dep -y --no-install-recommends $(CURDIR); }

# Builds build/zato-daemon_VERSION_all.deb from the files git tracks, in a scratch copy so
# that dpkg-buildpackage's output stays out of the tree, then lints it: any lintian
# error or warning (pedantic and experimental tags included) fails the build.
deb: deb-deps
	rm -rf build/deb build/zato-daemon_*.deb && mkdir -p build/deb/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C build/deb/src
	if [ -n "$(DEB_VERSION)" ]; then cd build/deb/src && \
		DEBEMAIL=zato-daemon@example.org DEBFULLNAME="zato-daemon developers" \
		dch --newversion "$(DEB_VERSION)" --distribution unstable --force-distribution "Build for tests."; fi
	# Debian's own python3.11 builds the package, even where another python3 comes first in PATH.
	cd build/deb/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	mv build/deb/*.deb build/
	lintian -EI --pedantic --fail-on error,warning build/zato-daemon_*.deb

clean:
	rm -rf $(VENV) .run build *.egg-info
