# Everything CI runs is `make test`; `make demo` shows the collection on a local cluster.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
PYTEST := $(BIN)/python -m pytest
CLIENTS_STAMP := tests/clients/node_modules/.installed
# The suites that wait on clusters (gossip, failovers, ansible-playbook runs) run a test file per worker, two at a
# time: every test has its own ports, directories and namespaces. PARALLEL= runs them one by one.
PARALLEL ?= -n 2 --dist loadfile

.PHONY: test unit integration reliability-sample test-reliability test-playbooks test-faults-versions sanity lint demo bench fuzz deps redis chromium roles-deps netns-deps roles-rootfs rootfs-12 versions-rootfs roles-sample test-roles bench-versions clean

# The roles' tests (the longest, so first) mostly wait on booting hosts and systemd's timer while the static checks
# take CPU: they run side by side, each one's output shown whole once it ends.
test: unit integration reliability-sample
	$(MAKE) --no-print-directory -j 2 --output-sync=target roles-sample sanity lint

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

deps: $(STAMP) redis $(CLIENTS_STAMP)

# Cluster clients from another ecosystem (ioredis), which the online tests and the clients benchmark write through.
$(CLIENTS_STAMP): tests/clients/package.json tests/clients/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "node and npm are missing: run 'sudo apt-get install nodejs npm', or run make as root" >&2; \
	    exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error >/dev/null
	touch $(CLIENTS_STAMP)

# Real redis-server and redis-cli from Debian packages; the tests start their own processes (and make
# throwaway certificates with openssl for the TLS tests).
redis:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v openssl >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "redis-server/redis-cli/openssl are missing: run 'sudo apt-get install redis-server redis-tools openssl', or run make as root" >&2; \
	    exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools openssl >/dev/null; \
	fi

# Headless Chromium from the Debian package: the report playbook's tests open its page, read the DOM and take
# screenshots.
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "chromium is missing: run 'sudo apt-get install chromium', or run make as root" >&2; \
	    exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Booting Debian hosts with systemd as PID 1 for the roles' tests: debootstrap builds their root file systems,
# systemd-nspawn boots them, ssh reaches them.
roles-deps:
	@if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null || ! command -v ssh >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "debootstrap/systemd-nspawn/ssh are missing: run 'sudo apt-get install debootstrap systemd-container openssh-client', or run make as root" >&2; \
	    exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container openssh-client >/dev/null; \
	fi

# ip (iproute2) for the partition tests, which put test hosts into network namespaces joined by a bridge.
netns-deps:
	@if ! command -v ip >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "ip is missing: run 'sudo apt-get install iproute2', or run make as root" >&2; \
	    exit 1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; \
	fi

# Builds (or finds) the named cached root file systems.
BUILD_ROOTFS = $(BIN)/python tests/lib/nspawn_hosts.py build

# The Debian 12 and 13 root file systems, built side by side into REDISOPS_ROOTFS_CACHE (default
# /var/cache/redisops-tests) unless already there.
roles-rootfs: deps roles-deps
	$(BUILD_ROOTFS) 12 & pid=$$!; \
	$(BUILD_ROOTFS) 13 || { wait $$pid; exit 1; }; \
	wait $$pid

# make test's share of the roles under systemd: Debian 12 only, every assertion of the full run (CI's 45 minutes
# leave no room for both releases and the molecule scenario, about 12 minutes from an empty cache). The Valkey
# deployment (test_valkey_systemd.py, Debian 13 only) skips here; test-roles runs it.
roles-sample: rootfs-12
	REDISOPS_SYSTEMD_RELEASES=12 $(PYTEST) tests/systemd

# The Debian 12 root file system alone (what roles-sample boots).
rootfs-12: deps roles-deps
	$(BUILD_ROOTFS) 12

# The roles under a real systemd on Debian 12 and 13 (Redis on both, Valkey on 13), then the molecule scenario
# (Debian 12), which finds the collection through a temporary collections path.
test-roles: roles-rootfs
	$(PYTEST) tests/systemd
	collections=$$(mktemp -d) && mkdir -p $$collections/ansible_collections/redisops && \
	ln -s $(CURDIR) $$collections/ansible_collections/redisops/cluster && \
	ANSIBLE_COLLECTIONS_PATH=$$collections PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test -s debian_systemd; \
	status=$$?; rm -rf $$collections; exit $$status

unit: deps
	$(PYTEST) -n 2 tests/unit

integration: deps chromium
	$(PYTEST) $(PARALLEL) tests/integration

# The reliability suites' fast cases (marked sample); test-reliability runs the others, so make test followed by
# make test-reliability (what CI runs) runs every case once.
reliability-sample: deps
	$(PYTEST) $(PARALLEL) tests/reliability -m sample

# Debian 13's Redis 8.0 and Valkey 8.1, installed in a Debian 13 root file system derived from roles-rootfs's,
# which the version matrix runs its servers from (built into REDISOPS_ROOTFS_CACHE unless already there).
versions-rootfs: deps roles-deps
	$(BUILD_ROOTFS) servers

# Faults during moves, partitions, bad input, check mode, secrets, TLS with ACL, other server versions; CI runs
# it after make test. Figures in docs/reliability.md.
test-reliability: deps netns-deps versions-rootfs
	$(PYTEST) $(PARALLEL) tests/reliability -m "not sample" $(RELIABILITY_ARGS)

# The fault trials (3 per operation and the sample's) on Redis 8.0 and Valkey 8.1, each version in its own pytest
# process, the two at once (tests/reliability/test_versions.py); not part of CI's run, which has no time left for
# them. REDISOPS_VERSION_FAULT_TRIALS=11 runs all 33.
test-faults-versions: deps versions-rootfs
	REDISOPS_VERSION_FAULT_TRIALS=$${REDISOPS_VERSION_FAULT_TRIALS:-3} $(PYTEST) -n 2 tests/reliability/test_versions.py \
		-k fault_trials

# The deploy, rolling_restart and reconcile playbooks on local hosts the roles deploy (about 10 minutes; CI's 45
# minutes leave no room for them next to make test, which runs the other playbooks' tests in tests/integration).
test-playbooks: deps
	$(PYTEST) tests/playbooks

sanity: deps
	PATH="$(CURDIR)/$(BIN):$$PATH" tools/sanity.sh

lint: deps
	PATH="$(CURDIR)/$(BIN):$$PATH" tools/lint.sh

demo: deps
	$(BIN)/python tools/demo.py

# Benchmarks (against redis-cli on identical data where it has a counterpart); each rewrites its own section of docs/benchmarks.md.
bench: deps
	$(BIN)/python bench/create_bench.py
	$(BIN)/python bench/placement_bench.py
	$(BIN)/python bench/facts_bench.py
	$(BIN)/python bench/migrate_bench.py
	$(BIN)/python bench/fix_bench.py
	$(BIN)/python bench/clients_bench.py
	$(BIN)/python bench/node_bench.py
	$(BIN)/python bench/agent_bench.py

# Draining a master on the host's Redis and on Debian 13's Redis 8.0 and Valkey 8.1, against each server's cli (root:
# the servers run from the tree versions-rootfs builds).
bench-versions: deps versions-rootfs
	$(BIN)/python bench/versions_bench.py

# redis_cluster_fix against redis-cli on FUZZ_STATES (300) seeded broken states; writes docs/reliability.md.
fuzz: deps
	$(BIN)/python tests/fuzz_fix.py

clean:
	rm -rf $(VENV) tests/output .pytest_cache .hypothesis
