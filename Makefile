# phemex-rl — all set-up lives here so that a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed
# Peer environments for `make bench` live in their own venv: gym-trading-env pins an old ccxt.
PEERS_VENV := .peers-venv
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_REQ := benchmarks/peers/requirements.txt
PEERS_STAMP := $(PEERS_VENV)/.installed

# The monitoring page (frontend/): npm dependencies from package-lock.json, built by Vite into
# frontend/dist, which the trading service serves at `/`.
PAGE := frontend/dist/index.html
PAGE_SOURCES := $(wildcard frontend/src/*.ts frontend/src/*.css) frontend/index.html \
	frontend/package-lock.json frontend/tsconfig.json frontend/vite.config.ts

.PHONY: setup test test-fast demo bench peers-venv lint format clean postgresql chromium

setup: $(STAMP) $(PAGE)

$(PAGE): $(PAGE_SOURCES)
	cd frontend && npm ci --no-audit --no-fund && npm run build

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# The journal tests run a real PostgreSQL server (Debian's package; its binaries live in
# /usr/lib/postgresql/<version>/bin, off the PATH): installed here when missing.
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql)

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
chromium:
	@test -x /usr/bin/chromium || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

test: setup postgresql chromium
	$(PY) -m pytest

test-fast: setup postgresql
	$(PY) -m pytest -m "not slow and not browser"

# `make demo DEMO_MAX_BARS=N` stops the paper trader it ends with after N bars.
demo: setup
	$(PY) -m serving.service.demo $(if $(DEMO_MAX_BARS),--max-bars $(DEMO_MAX_BARS))
	@echo "phemex-rl and python are in $(VENV)/bin: 'source $(VENV)/bin/activate' puts them on your PATH"

peers-venv: $(PEERS_STAMP)

$(PEERS_STAMP): $(PEERS_REQ)
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --upgrade pip
	$(PEERS_PY) -m pip install --quiet $(TORCH_PIN)
	$(PEERS_PY) -m pip install --quiet -r $(PEERS_REQ)
	$(PEERS_PY) -c "import gym_anytrading, gym_trading_env.environments"
	touch $(PEERS_STAMP)

bench: setup peers-venv
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/exchange_latency.py
	$(PY) benchmarks/data_scale.py
	$(PY) benchmarks/serving_latency.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache build *.egg-info frontend/node_modules frontend/dist
