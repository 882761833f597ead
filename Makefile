# The README's two commands: `make demo` and `make test`. Both work on a fresh Debian 12 machine:
# they install the Debian packages that are missing, then build .venv with the Cython kernel.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# rebuilt whenever the packaging or the kernel changes
INSTALLED := $(VENV)/.installed

# venv, compiler and headers build the kernel; opuslib loads libopus0; espeak-ng speaks the demo's
# sentences; ffmpeg is the media tool of the docs and tests; DejaVu draws the site labels;
# chromium is the browser site of the browser tests; iproute2, iptables and libnetfilter-queue
# (headers for the PyPI NetfilterQueue) make the impaired links of tests/test_impaired.py;
# libyuv0 is one of the methods benchmarks/bench_composite.py times the kernel against
SYSTEM_PACKAGES := python3-venv python3-dev gcc libc6-dev libopus0 \
	espeak-ng ffmpeg fonts-dejavu-core chromium \
	iproute2 iptables libnetfilter-queue-dev libyuv0

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test lint system-packages clean distclean

demo: system-packages $(INSTALLED)
	$(VENV_PYTHON) -m mcu demo

test: lint
	$(VENV_PYTHON) -m pytest -q

# style and types: ruff and mypy (settings in pyproject.toml), cython-lint for the kernel
lint: system-packages $(INSTALLED)
	$(VENV)/bin/ruff check mcu tests benchmarks
	$(VENV)/bin/mypy
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cython-lint --max-line-length 100 mcu/_mix.pyx

# apt only runs when something is missing, so a ready machine needs neither root nor network
system-packages:
	@missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
		dpkg -s "$$package" 2>/dev/null | grep -q '^Status: install ok installed' \
			|| missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $$missing; \
	fi

$(VENV_PYTHON): | system-packages
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(VENV_PYTHON) pyproject.toml setup.py mcu/_mix.pyx mcu/_simd.h
	$(VENV_PYTHON) -m pip install --upgrade pip
	$(VENV_PYTHON) -m pip install -e '.[test]'
	touch $@

clean:
	rm -rf build out *.egg-info mcu/_mix.c mcu/_mix*.so .pytest_cache .hypothesis
	rm -f $(INSTALLED)  # the kernel just removed must be built again
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
