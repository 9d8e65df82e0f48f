# Two set-up commands: `make run` (everything for local work) and `make test` (the whole suite).
# Both install what they need first: uv into .tools/, then the locked environment into .venv/.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: run test lint bench install clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

install: .venv/.installed

run: install
	.venv/bin/erp dev

test: install
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
