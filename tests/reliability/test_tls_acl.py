# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole life of a cluster over TLS only (clients, cluster bus, replication), run by the playbooks as the minimal
ACL user of docs/playbooks.md, on local hosts the roles deploy: deploy, scale_out, rebalance, scale_in, fix,
rolling_restart, reconcile and report, every one with -vvv. The `default` user has a password of its own, which only
the test's checks use, so a module that fell back to it would fail. One unique password is the ACL user's, the
replicas' masterauth and the agent's: it must not appear in any playbook's output, the facts, the logs, the
reconcile history or the report. The tests run in file order on one deployment.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import uuid

import pytest
import redis
from cluster_checks import ACL_USER, all_keys, cluster_client, masters, minimal_acl, owner_id, raw, wait_for
from playbook_runs import run_collection_playbook
from redis.crc import key_slot
from redis_harness import REDIS_CLI, TlsFiles
from role_hosts import RoleHosts

SECRET = "s3cret-" + uuid.uuid4().hex  # the ACL user's password, masterauth and the agent's password
ADMIN = "admin-" + uuid.uuid4().hex  # the default user's: the test's own checks only
KEYS = 2000
ZONES = ("a", "b", "c")


class Site:
    """The role hosts, the TLS files, the keys written and what each step measured."""

    def __init__(self, root: str):
        self.root = root
        # One certificate for every address the hosts use (127.0.0.2 up): clients check the address they dial.
        self.tls = TlsFiles(os.path.join(root, "tls"), addresses=["127.0.0.%d" % index for index in range(2, 8)])
        self.hosts = RoleHosts(
            node_timeout=2000,
            redis_node_save="",
            redis_node_password=SECRET,
            redis_node_acl_users=["user default on >%s ~* &* +@all" % ADMIN, minimal_acl(SECRET)],
            redis_node_replication_user=ACL_USER,
            redis_node_tls=True,
            redis_node_tls_cert_src=self.tls.cert,
            redis_node_tls_key_src=self.tls.key,
            redis_node_tls_ca_src=self.tls.ca,
            redis_cluster_login_user=ACL_USER,
        )
        self.expected: dict = {}
        self.history_dir = os.path.join(root, "history")
        self.report_file = os.path.join(root, "report.html")

    def nodes(self, group: str = "redis_cluster") -> list:
        """The group's instances, reached as the default user (the test's checks, not the collection's)."""
        return self.hosts.nodes(self.hosts.groups.get(group, []), password=ADMIN, tls=self.tls)

    def playbook(self, name: str, extra_vars=None, succeed: bool = True):
        """ansible-playbook -vvv redisops.cluster.NAME; the run, whose output never holds the password."""
        run = run_collection_playbook(name, self.hosts.inventory(), extra_vars=extra_vars, verbosity=3)
        assert SECRET not in run.output, "the password is in the output of %s" % name
        if succeed:
            assert run.rc == 0, run.output[-8000:]
        return run

    def close(self) -> None:
        self.hosts.close()


@pytest.fixture(scope="module")
def site():
    made = Site(tempfile.mkdtemp(prefix="redisops-tls-acl-"))
    try:
        yield made
    finally:
        made.close()
        subprocess.run(["rm", "-rf", made.root], check=False)


# --- what every step checks ----------------------------------------------------------------------------------------


def denied(nodes) -> list:
    """ACL LOG entries of every node: what the ACL refused (a command, a key, a channel, or a failed login)."""
    return [(node.address, entry) for node in nodes for entry in node.call("ACL", "LOG")]


def key_count(nodes) -> int:
    return sum(node.call("DBSIZE") for node in masters(nodes))


def assert_keys_and_acl(site: Site) -> None:
    """Every key written is on its master with its value, nothing else is, and the ACL refused nothing."""
    nodes = site.nodes()
    assert key_count(nodes) == len(site.expected)
    assert all_keys(nodes) == site.expected
    assert denied(nodes) == []


def cli_check(site: Site) -> str:
    node = site.nodes()[0]
    return subprocess.run([REDIS_CLI] + site.tls.cli_args() + ["--cluster", "check", node.address],
                          env=dict(os.environ, REDISCLI_AUTH=ADMIN), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60, check=False).stdout


def assert_clean(site: Site) -> None:
    report = cli_check(site)
    assert "[OK] All nodes agree about slots configuration." in report, report
    assert "[OK] All 16384 slots covered." in report, report
    assert "[ERR]" not in report and "[WARNING]" not in report, report


def slot_counts(node) -> dict:
    counts = {}
    for fields in map(str.split, node.cluster_nodes().splitlines()):
        if "master" in fields[2]:
            counts[fields[0]] = sum(int(part.partition("-")[2] or part) - int(part.partition("-")[0]) + 1
                                    for part in fields[8:] if not part.startswith("["))
    return counts


# --- the life ------------------------------------------------------------------------------------------------------


def test_deploy_forms_a_tls_only_cluster_as_the_acl_user(site):
    for zone in ZONES:
        site.hosts.add("redis_cluster", zone, 2)
    site.playbook("deploy")
    nodes = site.nodes()
    assert len(masters(nodes)) == 3 and len(nodes) == 6
    for node in nodes:
        config = node.client().config_get("*")
        assert (config["port"], config["tls-port"]) == ("0", str(node.port))
        assert (config["tls-cluster"], config["tls-replication"], config["masteruser"]) == ("yes", "yes", ACL_USER)
    assert denied(nodes) == []
    # Plain text is refused; the default user does not take the ACL user's password (the ACL logs that login).
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=nodes[0].host, port=nodes[0].port, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=nodes[0].host, port=nodes[0].port, password=SECRET, socket_timeout=5,
                    **site.tls.client_kwargs()).ping()
    assert [(entry[b"reason"], entry[b"username"]) for _address, entry in denied(nodes)] == [(b"auth", b"default")]
    nodes[0].call("ACL", "LOG", "RESET")
    # The replicas replicate over TLS as the ACL user.
    for node in nodes:
        role = node.call("ROLE")
        assert role[0] == b"master" or role[3] == b"connected", (node.address, role)
    client = cluster_client(nodes)
    try:
        site.expected = {("key:%d" % index).encode(): ("value-%d" % index).encode() for index in range(KEYS)}
        pipe = client.pipeline()
        for key, value in site.expected.items():
            pipe.set(key, value)
        pipe.execute()
    finally:
        client.close()
    assert_keys_and_acl(site)


def test_scale_out_adds_a_master_over_tls(site):
    added = site.hosts.add("redis_cluster_new", "a", 1)
    site.playbook("scale_out", {"redis_cluster_scale_out_group": "redis_cluster_new",
                                "redis_cluster_scale_out_become": False})
    site.hosts.move(added.name, "redis_cluster")
    nodes = site.nodes()
    new_master = next(node for node in nodes if node.address == added.addresses[0])
    assert new_master.call("ROLE")[0] == b"master"
    assert sorted(slot_counts(nodes[0]).values()) == [4096] * 4
    assert_keys_and_acl(site)


def test_rebalance_by_weight_over_tls(site):
    heavy = site.hosts.hosts["host-4"].addresses[0]
    site.playbook("rebalance", {"redis_cluster_rebalance_weights": {heavy: 2}})
    nodes = site.nodes()
    heavy_id = next(node for node in nodes if node.address == heavy).node_id()
    counts = slot_counts(nodes[0])
    assert abs(counts[heavy_id] - 16384 * 2 // 5) <= 16384 * 0.02, counts
    assert_keys_and_acl(site)


def test_scale_in_drains_and_stops_the_added_host(site):
    leaving = site.hosts.hosts["host-4"]
    site.hosts.groups.setdefault("redis_cluster_leaving", []).append(leaving.name)
    site.playbook("scale_in", {"redis_cluster_scale_in_group": "redis_cluster_leaving",
                               "redis_cluster_scale_in_become": False})
    wait_for(lambda: all(leaving.pid(port) is None for port in leaving.ports), timeout=15,
             message="the removed instance to stop")
    for members in site.hosts.groups.values():
        members.remove(leaving.name) if leaving.name in members else None
    nodes = site.nodes()
    assert len(nodes) == 6 and sorted(slot_counts(nodes[0]).values()) == [5461, 5461, 5462]
    assert_keys_and_acl(site)


def half_moved_slot(site: Site) -> int:
    """A slot with keys left open half-way between two masters, by raw CLUSTER SETSLOT and MIGRATE: the slot."""
    nodes = site.nodes()
    slot = key_slot(b"key:0")
    owner = owner_id(nodes[0], slot)
    source = next(node for node in masters(nodes) if node.node_id() == owner)
    target = next(node for node in masters(nodes) if node is not source)
    raw(target, ("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id()))
    raw(source, ("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id()))
    keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    assert keys, "slot %d holds no key" % slot
    source.call("MIGRATE", target.host, target.port, "", 0, 5000, "AUTH", ADMIN, "KEYS", *keys[:len(keys) // 2 + 1])
    return slot


def test_fix_closes_a_half_moved_slot_over_tls(site):
    slot = half_moved_slot(site)
    assert "[WARNING]" in cli_check(site)
    site.playbook("fix")
    assert_clean(site)
    assert not any("[%d-" % slot in node.cluster_nodes() for node in site.nodes())
    assert_keys_and_acl(site)


def test_rolling_restart_restarts_every_instance_over_tls(site):
    nodes = site.nodes()
    before = {node.address: node.client().info("server")["run_id"] for node in nodes}
    masters_before = sorted(node.address for node in masters(nodes))
    site.playbook("rolling_restart")
    nodes = site.nodes()
    after = {node.address: node.client().info("server")["run_id"] for node in nodes}
    assert all(after[address] != run_id for address, run_id in before.items()), (before, after)
    assert sorted(node.address for node in masters(nodes)) == masters_before
    assert_keys_and_acl(site)
    assert_clean(site)


# --- secrets -------------------------------------------------------------------------------------------------------


def test_reconcile_history_and_report_hold_no_password(site):
    extra = {"redis_cluster_reconcile_history_dir": site.history_dir}
    site.playbook("reconcile", extra)
    site.playbook("report", dict(extra, redis_cluster_report_file=site.report_file))
    history = os.path.join(site.history_dir, "redis_cluster.jsonl")
    with open(history) as handle:
        records = handle.read()
    assert records.count("\n") >= 1 and SECRET not in records
    with open(site.report_file) as handle:
        page = handle.read()
    assert "<html" in page.lower() and SECRET not in page
    assert denied(site.nodes()) == []


def test_a_wrong_password_fails_without_being_shown(site):
    wrong = "wrong-" + uuid.uuid4().hex
    run = site.playbook("check", {"redis_cluster_login_password": wrong}, succeed=False)
    assert run.rc != 0, run.output[-4000:]
    assert wrong not in run.output
    assert "WRONGPASS" in run.output or "invalid username-password" in run.output, run.output[-4000:]
    # The ACL logged the failed logins, and nothing else; cleared for the checks that follow.
    nodes = site.nodes()
    assert {(entry[b"reason"], entry[b"username"]) for _address, entry in denied(nodes)} == {(b"auth", ACL_USER.encode())}
    for node in nodes:
        node.call("ACL", "LOG", "RESET")


def test_only_the_auth_files_hold_the_password_and_only_their_owner_reads_them(site):
    """Every file the roles and the agent wrote, facts and logs included: the password only where it must be."""
    holding = {}
    for directory, _dirs, files in os.walk(site.hosts.root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                if SECRET.encode() in handle.read():
                    holding[os.path.relpath(path, site.hosts.root)] = stat.S_IMODE(os.stat(path).st_mode)
    expected = {}
    for host in site.hosts.hosts.values():
        expected[os.path.join(host.name, "conf", "auth.conf")] = 0o640
        expected[os.path.join(host.name, "conf", "users.acl")] = 0o640
        expected[os.path.join(host.name, "agent-conf", "password")] = 0o600
    assert holding == expected
    # The agents wrote their facts (the reconcile refreshed them), so the walk above read them.
    staying = [site.hosts.hosts[name] for name in site.hosts.groups["redis_cluster"]]
    assert all(os.path.exists(os.path.join(host.facts_dir, "redis_cluster.fact")) for host in staying)


def test_the_end_state_is_clean(site):
    assert_clean(site)
    assert_keys_and_acl(site)
