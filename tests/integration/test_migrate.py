# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The slot-migration engine on slots an interrupted move left open: a repair hands them to move_slots as they are."""

from __future__ import annotations

import time

import pytest
from cluster_checks import (
    Writer, assert_healthy, cluster_client, open_markers, owner_id, replica_of, tags_in, wait_for,
    wait_replicated,
)
from redis.crc import key_slot
from redis_harness import form_cluster

from ansible_collections.redisops.cluster.plugins.module_utils import _migrate
from ansible_collections.redisops.cluster.plugins.module_utils._client import SLOT, ConnectionOptions, NodeConnection, per_slot
from ansible_collections.redisops.cluster.plugins.module_utils._executor import ExecutionError, Executor
from ansible_collections.redisops.cluster.plugins.module_utils._planner import MIGRATE_SLOTS, Plan, Step
from ansible_collections.redisops.cluster.plugins.module_utils._topology import NodeAddress

KEYS_PER_SLOT = 20


def test_slots_already_open_are_finished_and_closed_everywhere(cluster3, monkeypatch):
    source, target, bystander = cluster3[0], cluster3[1], cluster3[2]
    ids = {node.port: node.node_id() for node in cluster3}
    first, last = next((int(entry[0]), int(entry[1])) for entry in source.call("CLUSTER", "SLOTS")
                       if int(entry[2][1]) == source.port)
    tags = tags_in(first, last, 7)
    slots = sorted(tags)
    for slot in slots:
        source.call("MSET", *[part for index in range(KEYS_PER_SLOT)
                              for part in (b"{%s}:%d" % (tags[slot], index), b"%d:%d" % (slot, index))])

    def setslot(node, slot, how, partner):
        node.call("CLUSTER", "SETSLOT", slot, how, ids[partner.port])

    def move_some(slot, to, count):
        keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, count)
        source.call("MIGRATE", to.host, to.port, "", 0, 5000, "KEYS", *keys)

    # The last slot is not open: it moves as in any rebalance, in the same batches.
    both, some_moved, migrating_only, importing_only, also_elsewhere, towards_other, _plain = slots
    for slot in (both, some_moved, also_elsewhere):
        setslot(source, slot, "MIGRATING", target)
        setslot(target, slot, "IMPORTING", source)
    move_some(some_moved, target, 8)
    setslot(source, migrating_only, "MIGRATING", target)
    setslot(target, importing_only, "IMPORTING", source)
    setslot(bystander, also_elsewhere, "IMPORTING", source)
    setslot(source, towards_other, "MIGRATING", bystander)
    setslot(bystander, towards_other, "IMPORTING", source)
    assert open_markers(bystander) and open_markers(source) and open_markers(target)
    left_on_source = sum(source.call("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in slots)

    # Batches of 3: the next batch is opened behind each hand-over, on slots already open too.
    monkeypatch.setattr(_migrate, "SLOT_BATCH", 3)
    options = ConnectionOptions()
    conns = [NodeConnection(node.host, node.port, options) for node in cluster3]
    try:
        moved = _migrate.move_slots(conns[0], conns[1], [conns[2]],
                                    (ids[source.port], ids[target.port], target.host, target.port), slots, options,
                                    pipeline=7)
    finally:
        for conn in conns:
            conn.close()

    assert moved == left_on_source
    wait_for(lambda: all(owner_id(node, slot) == ids[target.port] for node in cluster3 for slot in slots),
             message="every node naming the target as the owner")
    assert [open_markers(node) for node in cluster3] == [[], [], []]
    assert_healthy(source)
    with target.client() as conn:
        for slot in slots:
            values = conn.mget([b"{%s}:%d" % (tags[slot], index) for index in range(KEYS_PER_SLOT)])
            assert values == [b"%d:%d" % (slot, index) for index in range(KEYS_PER_SLOT)], slot
    assert [node.call("CLUSTER", "COUNTKEYSINSLOT", slot) for node in (source, bystander) for slot in slots] \
        == [0] * (2 * len(slots))


def test_a_move_onto_a_node_that_will_stay_down_fails_at_once(cluster3):
    """A target that sees slots nobody claims answers CLUSTERDOWN for good: the move says so instead of waiting out
    wait_timeout, and its slots stay open for a repair."""
    source, target = cluster3[0], cluster3[1]
    ranges = {int(entry[2][1]): (int(entry[0]), int(entry[1])) for entry in source.call("CLUSTER", "SLOTS")}
    first = ranges[source.port][0]
    tag = tags_in(first, first + 200, 1)
    cluster3[0].call("SET", b"{%s}k" % next(iter(tag.values())), b"v")
    dropped = ranges[target.port][0]
    target.call("CLUSTER", "DELSLOTSRANGE", dropped, dropped + 9)
    step = Step(MIGRATE_SLOTS, source.address, source.node_id(),
                (target.address, target.node_id(), target.host, target.port, tuple((s, s) for s in tag), ()),
                "move one slot")
    executor = Executor([NodeAddress(node.host, node.port) for node in cluster3], ConnectionOptions(), wait_timeout=60)
    started = time.monotonic()
    with pytest.raises(ExecutionError) as failure:
        executor.run(Plan((step,)))
    assert time.monotonic() - started < 15
    assert "%d-%d served by nobody" % (dropped, dropped + 9) in str(failure.value), str(failure.value)
    assert "redis_cluster_fix" in str(failure.value)


def own_range(node) -> tuple:
    """(first, last) of the first range of slots node serves."""
    return next((int(entry[0]), int(entry[1])) for entry in node.call("CLUSTER", "SLOTS") if int(entry[2][1]) == node.port)


def joined_newcomer(cluster3, fresh_nodes):
    """A fresh node that joined cluster3 as a master serving no slot."""
    newcomer = fresh_nodes(1)[0]
    cluster3[0].call("CLUSTER", "MEET", newcomer.host, newcomer.port, newcomer.bus_port)
    wait_for(lambda: all(newcomer.node_id() in node.cluster_nodes() for node in cluster3)
             and b"cluster_state:ok" in newcomer.call("CLUSTER", "INFO"), message="every node to know the newcomer")
    return newcomer


def test_a_client_counts_as_knowing_a_new_master_once_it_has_met_it(cluster3, fresh_nodes):
    """The grace for clients to learn a master that served no slot ends on clients_yet_to_learn: a redis-py client
    at work on every master does not know the new one until a MOVED sends it there; a second client that has not
    met it keeps the count above zero."""
    newcomer = joined_newcomer(cluster3, fresh_nodes)
    tags = {node.port: next(iter(tags_in(*own_range(node), 1).values())) for node in cluster3}
    owner = cluster3[0]
    key = b"{%s}:known" % tags[owner.port]
    options = ConnectionOptions()
    masters = [NodeConnection(node.host, node.port, options) for node in cluster3]
    target = NodeConnection(newcomer.host, newcomer.port, options)
    first_client, second_client = cluster_client(cluster3), cluster_client(cluster3)
    try:
        for client in (first_client, second_client):
            for tag in tags.values():
                client.set(b"{%s}:known" % tag, b"before")
        assert _migrate.clients_yet_to_learn(target, masters) == 2
        # The usual move of one slot, while no client writes.
        slot, owner_id, newcomer_id = key_slot(key), owner.node_id(), newcomer.node_id()
        newcomer.call("CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id)
        owner.call("CLUSTER", "SETSLOT", slot, "MIGRATING", newcomer_id)
        owner.call("MIGRATE", newcomer.host, newcomer.port, "", 0, 5000, "KEYS", key)
        for node in [newcomer] + list(cluster3):
            node.call("CLUSTER", "SETSLOT", slot, "NODE", newcomer_id)
        assert first_client.get(key) == b"before"
        assert first_client.get_node(newcomer.host, newcomer.port) is not None
        assert _migrate.clients_yet_to_learn(target, masters) == 1
        assert second_client.get(key) == b"before"
        assert _migrate.clients_yet_to_learn(target, masters) == 0
    finally:
        for conn in masters + [target]:
            conn.close()
        first_client.close()
        second_client.close()


def test_light_slots_go_over_without_opening_them_while_a_client_writes_there(cluster3, fresh_nodes):
    """hand_over_quietly copies the keys of light slots and lets the target claim them while writes on the source
    wait: an unpatched redis-py client writing into one of them meets the new master through MOVED and never an
    ASK (which it would raise on: the master is unknown to it), every key arrives with its value and expiry, and the
    source keeps none; a slot heavier than QUIET_SLOT_KEYS stays where it is. A server that cannot drop keys while
    its writes wait (Redis 7.2 and later) hands over the empty slot only, and opens none."""
    source, others = cluster3[0], list(cluster3[1:])
    newcomer = joined_newcomer(cluster3, fresh_nodes)
    tags = tags_in(*own_range(source), 5)
    empty, one, some, hashed, heavy = sorted(tags)
    writes = {one: 1, some: 20, heavy: _migrate.QUIET_SLOT_KEYS + 1}
    expected = {}
    for slot, count in writes.items():
        pairs = {b"{%s}:%d" % (tags[slot], index): b"%d:%d" % (slot, index) for index in range(count)}
        source.call("MSET", *[part for pair in pairs.items() for part in pair])
        expected.update(pairs)
    hash_key = b"{%s}:hash" % tags[hashed]
    source.call("HSET", hash_key, "field", "value")
    source.call("PEXPIRE", hash_key, 100000)
    for node in [newcomer] + list(cluster3):
        node.call("CONFIG", "RESETSTAT")
    options = ConnectionOptions()
    conns = [NodeConnection(node.host, node.port, options) for node in [source, newcomer] + others]
    pair = (source.node_id(), newcomer.node_id(), newcomer.host, newcomer.port)
    writer = Writer(cluster3, prefix="{%s}:online" % tags[some].decode())
    writer.start()
    try:
        wait_for(lambda: len(writer.acknowledged) > 50, message="the client to write")
        written_before = len(writer.acknowledged)
        handed, keys = _migrate.hand_over_quietly(conns[0], conns[1], conns[2:], pair, sorted(tags))
        written_after = len(writer.acknowledged)
        if some in handed:
            wait_for(lambda: writer.client.get_node(newcomer.host, newcomer.port) is not None,
                     message="the client to meet the new master")
    finally:
        writer.stop()
        for conn in conns:
            conn.close()
    quiet = [empty, one, some, hashed] if conns[0].drops_lost_keys_while_paused() else [empty]
    assert handed == quiet
    assert writer.errors == [] and writer.acknowledged
    assert b"errorstat_ASK" not in source.call("INFO", "errorstats")
    for key, value in list(expected.items()) + list(writer.acknowledged.items()):
        holder = newcomer if key_slot(key) in quiet else source
        assert holder.call("GET", key) == value, key
    owners = [pair[1] if slot in quiet else pair[0] for slot in sorted(tags)]
    for node in [newcomer] + list(cluster3):
        assert [owner_id(node, slot) for slot in sorted(tags)] == owners
    if quiet == [empty]:
        assert keys == 0
    else:
        # The client's keys so far went over too: those acknowledged before the call, perhaps some during it.
        assert 1 + 20 + 1 + written_before <= keys <= 1 + 20 + 1 + written_after
        assert newcomer.call("HGET", hash_key, "field") == b"value" and 0 < newcomer.call("PTTL", hash_key) <= 100000
        assert [source.call("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in quiet] == [0] * 4
    assert_healthy(source)


def test_a_quiet_hand_over_leaves_no_copy_with_the_source_replica_or_in_its_aof(fresh_nodes):
    """A source drops the keys of the slots it handed over when it learns the target's claim. Redis before 7.2 does so
    in memory only: its replica would keep them, and a restart would load them again from its AOF, each slot then
    importing stale copies that a repair moves back to the owner. After hand_over_quietly the source's replica holds
    no key of those slots, and the source, killed and restarted, loads none."""
    nodes = fresh_nodes(7, extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    form_cluster(nodes.nodes[:6], replicas=1)
    cluster, newcomer = nodes.nodes[:6], nodes.nodes[6]
    joined_newcomer(cluster, lambda _count: [newcomer])
    source = next(node for node in cluster if node.call("ROLE")[0] == b"master")
    replica = replica_of(cluster, source)
    tags = tags_in(*own_range(source), 3)
    expected = {}
    for slot, tag in tags.items():
        pairs = {b"{%s}:%d" % (tag, index): b"%d:%d" % (slot, index) for index in range(20)}
        source.call("MSET", *[part for pair in pairs.items() for part in pair])
        expected.update(pairs)
    wait_replicated(source, at_least=1)
    conns = [NodeConnection(node.host, node.port, ConnectionOptions()) for node in [source, newcomer]]
    if not conns[0].drops_lost_keys_while_paused():
        pytest.skip("this server hands over only slots that hold no key without opening them")
    pair = (source.node_id(), newcomer.node_id(), newcomer.host, newcomer.port)
    others = [NodeConnection(node.host, node.port, ConnectionOptions()) for node in cluster
              if node is not source and node.call("ROLE")[0] == b"master"]
    try:
        handed, keys = _migrate.hand_over_quietly(conns[0], conns[1], others, pair, sorted(tags))
    finally:
        for conn in conns + others:
            conn.close()
    assert handed == sorted(tags) and keys == len(expected)
    wait_replicated(source, at_least=1)
    assert [replica.call("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in handed] == [0, 0, 0]
    source.restart()
    wait_for(lambda: b"cluster_state:ok" in source.call("CLUSTER", "INFO"), message="the source back in the cluster")
    assert [source.call("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in handed] == [0, 0, 0]
    assert open_markers(source) == [] and open_markers(newcomer) == []
    with open(source.log_file) as log:
        assert "I have keys for slot" not in log.read()
    assert all(newcomer.call("GET", key) == value for key, value in expected.items())
    assert_healthy(source)


def test_a_pipeline_dealt_out_over_lanes_answers_as_one_pipeline(cluster3):
    """On a node whose SETSLOT waits for its replicas, the moves deal a pipeline's slots out over up to
    SETSLOT_LANES connections (_spread). The replies come back in the order of one pipeline, and a slot's commands
    of every part share one connection, so a slot's MIGRATING still comes before its listing of keys."""
    node = cluster3[0]
    first, last = next((int(entry[0]), int(entry[1])) for entry in node.call("CLUSTER", "SLOTS")
                       if int(entry[2][1]) == node.port)
    tags = tags_in(first, last, 40)
    for count, tag in enumerate(tag for _slot, tag in sorted(tags.items())):
        if count % 3:
            node.call("MSET", *[part for index in range(count % 5 + 1) for part in (b"{%s}:%d" % (tag, index), b"v")])
    slots = sorted(tags)
    everything = slots + [last]  # one slot only the second part names
    parts = [(slots[:35], lambda share: [per_slot(share, ("CLUSTER", "COUNTKEYSINSLOT", SLOT))]),
             (slots[5:] + [last], lambda share: [("CLIENT", "ID") for _slot in share]),
             (slots[:35], lambda share: [("CLIENT", "ID") for _slot in share])]
    with NodeConnection(node.host, node.port, ConnectionOptions()) as conn:
        alone = conn.pipeline([command for slots_of_part, build in parts for command in build(slots_of_part)])
        assert len(set(reply for reply in alone[35:] if isinstance(reply, int))) == 1
        spread = _migrate._spread(conn, ("TIMEOUT", _migrate.SETSLOT_WAIT_MS), parts)
        assert len(spread) == len(alone)
        # Replies that do not depend on the connection are the same, in the same order.
        assert spread[:35] == alone[:35] and sum(spread[:35]) > 0
        lane_ids = dict(zip(slots[5:] + [last], spread[35:71]))
        assert len(set(lane_ids.values())) == min(_migrate.SETSLOT_LANES, len(everything))
        # Every slot named by both parts went over the same connection for both.
        assert [lane_ids[slot] for slot in slots[5:35]] == spread[76:]
        # Without replicas to wait for, one pipeline on one connection.
        assert _migrate._spread(conn, (), parts)[35:] == [alone[35]] * (len(alone) - 35)
