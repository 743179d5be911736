# Centralino. `make run` runs the demo on loopback; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= ivr.yaml

.PHONY: help run run-edge test test-unit lint bench bench-load bench-console venv sipstack \
        system-deps clean \
        install uninstall

help:
	@echo "make run        run the switchboard on $(CONFIG) (the demo flow on loopback)"
	@echo "make run-edge   run Kamailio (registrar of agents' phones) and the switchboard"
	@echo "                under supervisord, configs generated from $(CONFIG) into var/edge/"
	@echo "make test       run the tests (unit and end-to-end over loopback SIP)"
	@echo "make test-unit  run only the tests that need no SIP stack"
	@echo "make lint       ruff and mypy"
	@echo "make bench      run the benchmarks and print their figures"
	@echo "make bench-load real calls into a real switchboard, 10 to 250 at once (about 4 min):"
	@echo "                a table and bench/results/DATE-LABEL.json (LABEL=run, CALLS=10,30,100,250)"
	@echo "make bench-console  what 50 open wallboards and 20 agent pages cost the switchboard"
	@echo "                at 100 calls (CPU) and how late events reach them (about 6 min):"
	@echo "                bench/results/DATE-console-LABEL.json (LABEL=run, PAIRS=2)"
	@echo "make sipstack   build (once, then cached) and install the pjsua2 SIP stack"
	@echo "make clean      remove the virtualenv and runtime files"
	@echo "make install    (root) install as a service: /opt/centralino, /etc/centralino,"
	@echo "                /var/lib/centralino, user centralino, systemd units; an upgrade keeps"
	@echo "                the configuration and data (DESTDIR=DIR, DRY_RUN=1: see scripts/install.sh)"
	@echo "make uninstall  (root) remove the program and units, keep configuration and data"
	@echo "                (PURGE=1 removes them too)"

system-deps:
	@scripts/system-deps.sh

# The virtualenv, with the project, its test tools and our own pjsua2 build.
$(BIN)/.ready: setup.cfg pyproject.toml sipstack/build.sh sipstack/config_site.h \
              $(wildcard sipstack/patches/*.patch) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	$(MAKE) sipstack
	touch $@

venv: $(BIN)/.ready

sipstack:
	@wheel=$$(PYTHON=$(abspath $(BIN)/python) sipstack/build.sh) && \
	  $(BIN)/pip install -q --force-reinstall --no-deps "$$wheel" && \
	  echo "SIP stack installed: $$($(BIN)/ivr --version | tail -n 1)"

# With an 'edge:' section in the configuration, agents' phones register with Kamailio: both run
# under supervisord (as run-edge); without it, the switchboard runs alone.
run: $(BIN)/.ready
	@if grep -q '^edge:' $(CONFIG); then $(MAKE) --no-print-directory run-edge; \
	 else $(BIN)/ivr run --config $(CONFIG); fi

# Kamailio in front (agents' phones register with it) and the switchboard behind it, both under
# supervisord; `$(BIN)/supervisorctl -c var/edge/supervisord.conf status` from another terminal.
run-edge: $(BIN)/.ready
	$(BIN)/python -m ivr.edge --config $(CONFIG) --out var/edge
	$(BIN)/supervisord -c var/edge/supervisord.conf

test: $(BIN)/.ready
	$(BIN)/python -m pytest -q tests
	$(BIN)/ivr test flows/

test-unit: $(BIN)/.ready
	$(BIN)/python -m pytest -q -m "not e2e" tests

lint: $(BIN)/.ready
	$(BIN)/ruff check ivr routing hw tests bench
	$(BIN)/mypy ivr routing hw

bench: $(BIN)/.ready
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	@echo "== bench/outbound/plan_bench.py"; $(BIN)/python bench/outbound/plan_bench.py
	@echo "== bench/outbound/import_bench.py"; $(BIN)/python bench/outbound/import_bench.py --no-json

# Rounds of N pjsua2 calls into `ivr run` (bench/load/); the JSON records the machine, the stack
# (`ivr --version`, with its patches) and the git revision.
LABEL ?= run
CALLS ?= 10,30,100,250
bench-load: $(BIN)/.ready
	$(BIN)/python -m bench.load --calls $(CALLS) --label $(LABEL)

# The console's pages under load (bench/console/): rounds of 100 calls without and with 70 open
# live streams; the CPU difference and the event -> page latency, with the machine, in the JSON.
# Two pairs by default: one round's CPU varies by a few % of a core on a shared machine.
PAIRS ?= 2
bench-console: $(BIN)/.ready
	$(BIN)/python -m bench.console --calls 100 --pairs $(PAIRS) --label $(LABEL)

# The service: scripts/install.sh says what it does (and, with DRY_RUN=1, what it would do).
PREFIX ?= /opt/centralino
INSTALL_FLAGS = --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) $(if $(DRY_RUN),--dry-run) \
                $(if $(NO_START),--no-start)
install:
	PYTHON=$(PYTHON) scripts/install.sh $(INSTALL_FLAGS)

uninstall:
	scripts/install.sh --uninstall $(INSTALL_FLAGS) $(if $(PURGE),--purge)

clean:
	rm -rf $(VENV) var build *.egg-info
