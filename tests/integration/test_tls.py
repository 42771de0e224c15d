# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole life over TLS: nodes that speak only TLS (clients, the cluster bus and MIGRATE between nodes)."""

from __future__ import annotations

import pytest
from playbook_runs import run_module
from cluster_checks import all_keys, assert_healthy, cluster_nodes_fields, facts_of, own_ranges, owner_id, write_keys
from redis.crc import key_slot
from redis_harness import TlsFiles


@pytest.fixture
def tls_files(tmp_path):
    return TlsFiles(str(tmp_path))


def connection(node, tls_files: TlsFiles, **extra) -> dict:
    options = dict(login_host="127.0.0.1", login_port=node.port, tls=True, ca_certs=tls_files.ca,
                   client_cert_file=tls_files.cert, client_key_file=tls_files.key)
    options.update(extra)
    return options


def ok(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    return result


def test_create_inspect_move_and_repair_over_tls(fresh_nodes, tls_files):
    nodes = fresh_nodes(6, tls=tls_files)
    created = ok(run_module("redis_cluster_create", dict(connection(nodes[0], tls_files),
                                                         nodes=[node.address for node in nodes], replicas=1)))
    assert created["changed"]
    expected = write_keys(nodes, 2000)
    facts = facts_of(run_module("redis_cluster_facts", connection(nodes[1], tls_files)))
    masters = [node for node in facts["nodes"] if node["role"] == "master"]
    assert facts["state"] == "ok" and facts["slots_covered"] == 16384 and len(masters) == 3
    assert sum(node["keys"] for node in masters) == 2000
    # Slots that hold keys, so the nodes MIGRATE them to each other over TLS.
    target = masters[0]
    served = {slot for fields in cluster_nodes_fields(nodes[0]) if fields[0] == target["id"]
              for first, last in own_ranges(fields) for slot in range(first, last + 1)}
    slots = sorted({key_slot(key) for key in expected} - served)[:200]
    moved = ok(run_module("redis_cluster_reshard", dict(connection(nodes[0], tls_files), slot_list=[str(s) for s in slots],
                                                        to="%s:%d" % (target["host"], target["port"]))))
    assert moved["slots_moved"] == 200 and moved["keys_moved"] >= 200
    assert {owner_id(nodes[0], slot) for slot in slots} == {target["id"]}
    rebalanced = ok(run_module("redis_cluster_rebalance", connection(nodes[0], tls_files)))
    assert rebalanced["changed"] and rebalanced["slots_moved"] > 0
    assert all_keys(nodes) == expected
    assert_healthy(nodes[0])
    assert ok(run_module("redis_cluster_fix", connection(nodes[0], tls_files)))["changed"] is False
    assert ok(run_module("redis_cluster_rebalance", connection(nodes[0], tls_files)))["changed"] is False


def test_wrong_ca_fails_with_a_message_and_plain_text_is_refused(fresh_nodes, tls_files, tmp_path):
    nodes = fresh_nodes(1, tls=tls_files)
    other = TlsFiles(str(tmp_path / "other"))
    untrusted = run_module("redis_cluster_facts", connection(nodes[0], tls_files, ca_certs=other.ca))
    assert untrusted["failed"] and nodes[0].address in untrusted["msg"] and "check ca_certs" in untrusted["msg"]
    anonymous = run_module("redis_cluster_facts", connection(nodes[0], tls_files, client_cert_file=None,
                                                             client_key_file=None))
    assert anonymous["failed"] and "set client_cert_file and client_key_file" in anonymous["msg"]
    plain = run_module("redis_cluster_facts", dict(login_host="127.0.0.1", login_port=nodes[0].port))
    assert plain["failed"] and nodes[0].address in plain["msg"] and "set tls: true" in plain["msg"]
    assert not any("Traceback" in result["msg"] for result in (untrusted, anonymous, plain))
