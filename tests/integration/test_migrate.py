# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The slot-migration engine on slots an interrupted move left open: a repair hands them to move_slots as they are."""

from __future__ import annotations

from cluster_checks import assert_healthy, owner_id, wait_for
from redis.crc import key_slot

from ansible_collections.redisops.cluster.plugins.module_utils import _migrate
from ansible_collections.redisops.cluster.plugins.module_utils._client import ConnectionOptions, NodeConnection

KEYS_PER_SLOT = 20


def tags_in(first: int, last: int, count: int) -> dict:
    """slot -> a hash tag of that slot, for count distinct slots in first..last."""
    found, index = {}, 0
    while len(found) < count:
        slot = key_slot(b"t%d" % index)
        if first <= slot <= last:
            found.setdefault(slot, b"t%d" % index)
        index += 1
    return found


def open_markers(node) -> list:
    mine = next(line for line in node.cluster_nodes().splitlines() if "myself" in line)
    return [token for token in mine.split()[8:] if token.startswith("[")]


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
