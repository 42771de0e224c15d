# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The version matrix: a named subset of tests/integration, run again on Redis 8.0 and on Valkey 8.1.

The servers are Debian 13's packages, installed in a cached Debian 13 root file system
(nspawn_hosts.servers_rootfs, which `make test-reliability` builds first) and run from it on this machine's
network (rootfs_servers). Each version's subset runs in its own pytest process with REDIS_SERVER and REDIS_CLI
naming that version's programs, so the tests form clusters with that version's cli and judge them with its
`--cluster check`. Figures in docs/reliability.md (Versions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from xml.etree import ElementTree

import pytest

import nspawn_hosts
from rootfs_servers import SERVERS, unavailable_reason, write_wrappers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Server -> the major.minor the matrix is for; the subset fails fast if another version answers.
EXPECTED = {"redis": "8.0", "valkey": "8.1"}
# One or two cases per module, the fix case with clients writing: what a cluster's life asks of the server.
SUBSET = (
    "tests/integration/test_create.py::test_six_nodes_check_mode_then_create_then_idempotent",
    "tests/integration/test_facts.py::test_healthy_cluster_from_one_seed",
    "tests/integration/test_fix.py::test_half_done_migration_is_finished_while_clients_write",
    "tests/integration/test_rebalance.py::test_acl_user_moves_keys_and_the_password_never_shows",
    "tests/integration/test_rebalance.py::test_weights_and_drain",
    "tests/integration/test_rebalance.py::test_rebalance_onto_a_new_master_while_clients_write",
    "tests/integration/test_migrate.py::test_light_slots_go_over_without_opening_them_while_a_client_writes_there",
    "tests/integration/test_node.py::test_replace_a_replica",
    "tests/integration/test_node.py::test_a_removed_master_joins_again_at_once",
    "tests/integration/test_failover.py::test_force_promotes_the_replica_of_a_killed_master",
)
SUBSET_TIMEOUT_S = 600
# Fault trials per operation (tests/reliability/test_faults.py) on each version; 0 leaves them out of make
# test-reliability, make test-faults-versions sets it.
FAULT_TRIALS = int(os.environ.get("REDISOPS_VERSION_FAULT_TRIALS", "0"))
FAULT_TRIAL_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def servers_root() -> str:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    return nspawn_hosts.servers_rootfs()


def failed_tests(report: str) -> list:
    """The ids of the tests a junit report counts as failed or in error."""
    failed = []
    if not os.path.exists(report):
        return failed
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append("%s::%s" % (case.get("classname"), case.get("name")))
    return failed


def run_on(server: str, servers_root: str, tmp_path, tests, timeout_s: float, **extra_env) -> None:
    """tests pass in a pytest process whose servers and cli are server's (its version checked first)."""
    env = dict(os.environ, **write_wrappers(servers_root, server, str(tmp_path)), **extra_env)
    version = subprocess.run([env["REDIS_SERVER"], "--version"], stdout=subprocess.PIPE, text=True, check=True,
                             timeout=30).stdout
    assert " v=%s." % EXPECTED[server] in version, version
    report = str(tmp_path / "report.xml")
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--durations=0", "--junitxml", report]
    run = subprocess.Popen(args + list(tests), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        output = run.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        # Interrupted, pytest still stops its servers and writes the report of the tests it finished.
        run.send_signal(signal.SIGINT)
        output = run.communicate()[0]
    print(output[-20000:])
    failed = failed_tests(report)
    assert run.returncode == 0, "%s: failed %s (rc %d)\n%s" % (version.strip(), failed, run.returncode, output[-6000:])


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_integration_subset_passes(server, servers_root, tmp_path):
    run_on(server, servers_root, tmp_path, SUBSET, SUBSET_TIMEOUT_S)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_fault_trials_pass(server, servers_root, tmp_path):
    if not FAULT_TRIALS:
        pytest.skip("REDISOPS_VERSION_FAULT_TRIALS is 0; make test-faults-versions runs the fault trials on each version")
    # The trials of each operation up to FAULT_TRIALS, and the sample's.
    trials = 3 * FAULT_TRIALS + 1
    run_on(server, servers_root, tmp_path, ["tests/reliability/test_faults.py"], FAULT_TRIAL_TIMEOUT_S * trials,
           REDISOPS_FAULT_TRIALS=str(FAULT_TRIALS))
