# Two set-up commands: `make run` (everything for local work) and `make test` (the whole suite).
# Both install what they need first: uv into .tools/, then the locked environment into .venv/.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: run test lint bench install browser clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

install: .venv/.installed

# The browser tests (tests/e2e/test_console.py) drive Debian's Chromium through Playwright; Playwright
# never downloads a browser. Installed here when missing (as root, or through sudo); skipped quietly
# where there is no apt-get (or it fails, with a warning), and then those tests fail naming the fix (ERP_CHROMIUM names another
# binary, ERP_SKIP_BROWSER_TESTS=1 skips them).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get install -y --no-install-recommends chromium || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; } || \
		echo "make browser: could not install chromium; the browser tests will fail" >&2; \
	fi

run: install
	.venv/bin/erp dev

test: install browser
	.venv/bin/pytest -q

lint: install
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: install
	.venv/bin/erp bench

clean:
	rm -rf .venv .tools .erp
