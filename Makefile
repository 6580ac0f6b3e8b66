# Looking Glass: every target sets itself up (a .venv, node_modules) and is quick when already set up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: demo test lint synth bench clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

SPACENET := tests/data/spacenet_atlanta_sample

## demo: the whole pipeline twice, each run printing its summary: the synthetic world (writes
##       ./demo-output/synthetic), then the real SpaceNet Atlanta image against its footprints
##       (writes ./demo-output/spacenet-atlanta)
demo: $(STAMP)
	$(VENV)/bin/looking-glass demo --workers 2 --out demo-output/synthetic
	$(VENV)/bin/looking-glass demo --workers 2 --imagery $(SPACENET)/image.tif \
	  --truth $(SPACENET)/buildings.geojson --out demo-output/spacenet-atlanta

## test: the whole test suite
test: $(STAMP) $(NODE_STAMP)
	@command -v chromium >/dev/null 2>&1 || $(MAKE) --no-print-directory chromium
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

## lint: ruff (pyflakes, imports, bugbear, public docstrings, complexity) and the import-linter layer contracts
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## chromium: the headless browser of the map page test (Debian's package; nothing downloads a browser)
chromium:
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium

## synth: synthesize the CDK app offline (no AWS account needed)
synth: $(STAMP) $(NODE_STAMP)
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_VERSION_CHECK=true npx cdk synth --quiet

## bench: the benchmarks in benchmarks/
bench: $(STAMP)
	$(PY) benchmarks/cover_benchmark.py

clean:
	rm -rf demo-output cdk.out build .pytest_cache
