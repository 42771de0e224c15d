#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_node
short_description: Add a node to a Redis Cluster, remove one, or replace one
version_added: 0.1.0
description:
  - V(present) adds an empty node as a master (optionally moving its share of slots onto it, online) or as a
    replica (of O(master), or of the master that needs one most under the placement goals), and waits until every
    node knows it and, for a replica, until its first sync is over.
  - V(absent) removes a node. A master that serves slots is drained first - its slots go to the other masters in
    proportion to what each serves, so nothing else moves - and its replicas follow the masters that need them most.
    Every other node then forgets it at once (C(CLUSTER FORGET), again whenever gossip brings it back), and a
    reachable node is reset (C(CLUSTER RESET HARD)) so it forgets the cluster too and takes a new node id, with which it
    can be added again at once (every node bans a forgotten id for 60 seconds). A dead node is removed by its id;
    redis-cli's C(del-node) cannot remove a node that does not answer.
  - O(replace) puts the new node in an old node's place without moving a slot. For a master it joins as the old
    master's replica, syncs, takes over with C(CLUSTER FAILOVER) (no acknowledged write is lost), and the old node
    is removed; for a replica it joins as a replica of the same master and the old one is removed. The old node
    may be dead.
  - Every decision is made from the live state, so a rerun after an interruption goes on from where it stopped, and
    a run with nothing to do reports RV(changed=false).
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
  - redisops.cluster.change
  - redisops.cluster.migration
attributes:
  check_mode:
    support: full
    description: Returns the plan (with the slot moves of a drain or a rebalance) and writes nothing.
  diff_mode:
    support: none
    description: The module does not return a diff.
options:
  node:
    description:
      - The node to add (C(host:port)), or the node to remove (C(host:port), its node id, or an id prefix of at
        least 8 characters - a dead node by its id).
      - O(login_host) or O(nodes) must lead to a member of the cluster; the node to add may be listed in O(nodes)
        too (with its labels), it is not used to reach the cluster.
    type: str
    required: true
  state:
    description: Whether the node is a member of the cluster.
    type: str
    choices: [present, absent]
    default: present
  role:
    description:
      - The role of an added node. A node already in the cluster keeps its role; a master that serves no slot may
        become a replica, a replica may change masters (O(master)). A replica is never turned into a master here -
        promote it with M(redisops.cluster.redis_cluster_failover).
    type: str
    choices: [master, replica]
    default: master
  master:
    description:
      - With O(role=replica), the master it follows (C(host:port) or node id). Without it, a new replica follows the
        master that needs one most - never one in its host, rack or zone when another choice exists, and not one
        whose replicas share those with it, then the one with the fewest replicas - and a replica that is already
        a member stays where it is.
    type: str
  zone:
    description: The node's zone label, for placement (else its entry in O(nodes), if any).
    type: str
  rack:
    description: The node's rack label, for placement.
    type: str
  hostname:
    description: The node's host label, for placement (else the host of its address, or its announced hostname).
    type: str
  rebalance:
    description:
      - With O(role=master), move its share of slots onto it (as M(redisops.cluster.redis_cluster_rebalance) with
        equal weights and its default threshold), online. The node is first introduced to clients through C(MOVED)
        (O(client_grace)). A rerun changes nothing once the masters are within the threshold.
    type: bool
    default: false
  replace:
    description:
      - The node that O(node) replaces (C(host:port) or node id). O(node) must be empty, or already the old node's
        replica. Once the old node is gone, a rerun changes nothing.
      - A dead master that still serves slots (no replica took over) cannot be replaced; promote its replica with
        M(redisops.cluster.redis_cluster_failover) first, or remove it with O(allow_data_loss) and add the new node.
    type: str
  allow_data_loss:
    description:
      - Remove a dead master that still serves slots and whose replicas did not take over. A replica that still
        answers takes over (as M(redisops.cluster.redis_cluster_fix) does with C(allow_unreachable_masters));
        without one, the other masters take its slots empty, and its keys are lost.
    type: bool
    default: false
  force:
    description:
      - Remove a replica even when its master is left with fewer than O(min_replicas) live replicas, or a node that
        does not answer although the cluster has not flagged it C(fail).
      - The only master that serves slots can never be removed; add another first.
    type: bool
    default: false
  min_replicas:
    description:
      - Refuse to remove a live replica when its master would be left with fewer live replicas than this
        (O(force) overrides). Removing a dead replica never counts against it.
    type: int
    default: 1
  replace_keys:
    description:
      - When a drain or rebalance meets a key that already exists on the target with a different value, overwrite
        it. Without it such a key stops the run and is named; equal copies are always resolved (sets and hashes are
        compared by content, other types by their C(DUMP) payload). O(replace) names a node, hence this name.
    type: bool
    default: false
notes:
  - Before draining a master, the masters that receive its keys are checked for room where C(maxmemory) is set
    (its C(used_memory_dataset) shared out by key count, against C(maxmemory) minus C(used_memory)); the module fails
    with the numbers when they have none.
  - C(CLUSTER FORGET) bans a node for 60 seconds only; all nodes forget it at once, and the module watches for a
    node that relearns it from gossip and makes it forget again.
  - A removed node holds no keys afterwards; a drained master hands its keys over before it is reset.
  - Before its drain, a master being removed is kept out of failovers (C(CONFIG SET cluster-replica-no-failover yes));
    once its last slot is gone Redis makes it a replica of the master that took that slot, and a failure of that
    master must not promote the leaving node. Its reset puts the setting back (a removal interrupted before its
    reset leaves it V(yes) until the node restarts). This needs C(config|get) and
    C(config|set); an ACL user without them gets the removal without this guard (the refusal is logged in
    C(ACL LOG)), and the removal still stops before any C(CLUSTER FORGET) should a failover promote the node.
seealso:
  - module: redisops.cluster.redis_cluster_failover
  - module: redisops.cluster.redis_cluster_rebalance
  - module: redisops.cluster.redis_cluster_fix
"""

EXAMPLES = r"""
- name: Add a master and move its share of slots onto it, online
  redisops.cluster.redis_cluster_node:
    login_host: 10.0.0.11
    node: 10.0.0.17:6379
    zone: c
    rebalance: true

- name: Add a replica where placement wants it (another zone than its master's)
  redisops.cluster.redis_cluster_node:
    nodes:
      - {host: 10.0.1.11, zone: a}
      - {host: 10.0.2.11, zone: b}
      - {host: 10.0.3.11, zone: c}
      - {host: 10.0.3.12, zone: c}
    node: 10.0.3.12:6379
    role: replica

- name: Drain a master and remove it
  redisops.cluster.redis_cluster_node:
    login_host: 10.0.0.11
    node: 10.0.0.14:6379
    state: absent
    progress_file: /tmp/drain.progress
  async: 3600
  poll: 10

- name: Remove a dead node by its id (its replica took over already)
  redisops.cluster.redis_cluster_node:
    login_host: 10.0.0.11
    node: 3f9c0d2a7b1e4c5d6a8b9c0d1e2f3a4b5c6d7e8f
    state: absent

- name: Replace a master by a new machine, without moving a slot
  redisops.cluster.redis_cluster_node:
    login_host: 10.0.0.11
    node: 10.0.0.21:6379
    replace: 10.0.0.12:6379
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode, would be) written.
  returned: always
  type: bool
node:
  description: The node added, kept or removed - C(id), C(address), C(role) - or null when a node to remove is no
    member (nothing to do).
  returned: success
  type: dict
plan:
  description: The steps in words.
  returned: success
  type: list
  elements: str
  sample: ["127.0.0.1:7000 (a1b2c3d4): meet 127.0.0.1:7006 (e5f6a7b8)", "wait until every node knows 127.0.0.1:7006"]
plan_steps:
  description: The steps in machine form.
  returned: success
  type: list
  elements: dict
moves:
  description: One entry per slot move of a drain or rebalance, with C(source), C(target), C(slots) and C(keys).
  returned: success
  type: list
  elements: dict
slots_moved:
  description: Slots moved in this run (0 in check mode).
  returned: success
  type: int
keys_moved:
  description: Keys moved in this run.
  returned: success
  type: int
finished_open_slots:
  description: Steps that finished slots an earlier, interrupted move left open (drain and rebalance only).
  returned: when slots move
  type: list
  elements: str
completed:
  description: Steps done (also returned when a step fails; then RV(changed) says whether anything was written).
  returned: when the plan was applied
  type: list
  elements: str
state_id:
  description: Digest of the topology the plan was made from, for O(expect_state_id).
  returned: always
  type: str
before:
  description: Masters with slots and replicas, and idle nodes, before the run.
  returned: success
  type: dict
after:
  description: Masters with slots and replicas, and idle nodes, after the run.
  returned: success
  type: dict
findings:
  description: Health findings after the run.
  returned: success
  type: list
  elements: dict
placement_warnings:
  description: Always empty for this module.
  returned: success
  type: list
  elements: str
apply_ms:
  description: Milliseconds spent applying the plan.
  returned: when the plan was applied
  type: int
elapsed_ms:
  description: Milliseconds the module ran.
  returned: always
  type: int
"""

from ansible_collections.redisops.cluster.plugins.module_utils._change import change_argument_spec
from ansible_collections.redisops.cluster.plugins.module_utils._lifecycle import node_argument_spec, run_node
from ansible_collections.redisops.cluster.plugins.module_utils._module import run_module
from ansible_collections.redisops.cluster.plugins.module_utils._moves import move_argument_spec


def main():
    spec = change_argument_spec()
    spec.update(move_argument_spec(busy_keys="replace_keys"))
    spec.update(node_argument_spec())
    run_module(spec, run_node, supports_check_mode=True)


if __name__ == "__main__":
    main()
