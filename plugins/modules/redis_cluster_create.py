#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_create
short_description: Form a Redis Cluster from empty nodes, with anti-affinity placement
version_added: 0.1.0
description:
  - Forms a cluster from the nodes in O(nodes) - chooses masters and replicas so that no replica
    shares a host, rack or zone with its master where that is possible, splits the 16384 slots
    evenly in contiguous ranges, gives every node a distinct config epoch, joins the nodes and
    sets up replication, then waits until every node agrees and every new replica has finished its
    first sync with its master (until then it could not take over).
  - Idempotent. A cluster already formed from these nodes reports RV(changed=false); a half-made
    one (some nodes met, some slots assigned, replicas missing) is finished without undoing what
    is there.
  - Refuses before the first write, changing nothing, when a node is unreachable, holds keys, or
    knows nodes that are not listed.
  - The labels C(hostname), C(rack) and C(zone) of O(nodes) entries are the fault domains; without
    a C(hostname) label the node's address is its host.
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
  - redisops.cluster.change
attributes:
  check_mode:
    support: full
    description: Returns the plan and writes nothing.
  diff_mode:
    support: none
    description: The module does not return a diff.
options:
  replicas:
    description: Replicas per master. Masters are C(len(nodes) // (replicas + 1)); leftover nodes become extra replicas.
    type: int
    default: 1
  min_masters:
    description: Refuse to form a cluster with fewer masters than this.
    type: int
    default: 3
seealso:
  - module: redisops.cluster.redis_cluster_facts
  - name: redis-cli --cluster create
    description: The tool this module replaces.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/
"""

EXAMPLES = r"""
- name: Form a 3 x 2 cluster over three zones
  redisops.cluster.redis_cluster_create:
    nodes:
      - {host: 10.0.1.11, port: 6379, zone: a}
      - {host: 10.0.1.12, port: 6379, zone: a}
      - {host: 10.0.2.11, port: 6379, zone: b}
      - {host: 10.0.2.12, port: 6379, zone: b}
      - {host: 10.0.3.11, port: 6379, zone: c}
      - {host: 10.0.3.12, port: 6379, zone: c}
    replicas: 1

# Each host of the group sets redis_node, for example {host: 10.0.1.11, port: 6379, zone: a}.
- name: Form the cluster from an inventory group
  redisops.cluster.redis_cluster_create:
    nodes: "{{ groups['redis'] | map('extract', hostvars, 'redis_node') | list }}"
    replicas: 1
  run_once: true
  delegate_to: localhost

- name: Plan only, for review
  redisops.cluster.redis_cluster_create:
    nodes: "{{ redis_nodes }}"
  check_mode: true
  register: create_plan
"""

RETURN = r"""
changed:
  description: Whether the cluster was (or in check mode, would be) changed.
  returned: always
  type: bool
plan:
  description: The steps, in order, in words.
  returned: success
  type: list
  elements: str
  sample: ["127.0.0.1:7000 (a1b2c3d4): add 5461 slot(s) 0-5460", "wait until every node agrees on roles and slots"]
plan_steps:
  description: The steps in machine form (C(action), C(node), C(node_id), C(args), C(description)).
  returned: success
  type: list
  elements: dict
completed:
  description: Steps done, in words (also returned when a step fails).
  returned: when the plan was applied
  type: list
  elements: str
state_id:
  description: Digest of the topology the plan was made from; pass it to O(expect_state_id) to apply exactly a reviewed plan.
  returned: always
  type: str
  sample: 3f9a0c1d2e4b5a69
before:
  description: Masters with slots and replicas, and idle nodes, before the change.
  returned: success
  type: dict
after:
  description: The same summary after the change (equal to RV(before) in check mode).
  returned: success
  type: dict
  sample:
    masters:
      - {node: "127.0.0.1:7000", id: a1b2c3d4e5f60718293a4b5c6d7e8f9012345678, slots: "0-5460", slot_count: 5461, replicas: ["127.0.0.1:7004"]}
    idle_nodes: []
    slots_covered: 16384
findings:
  description: Health findings after the change, as in redisops.cluster.redis_cluster_facts.
  returned: success
  type: list
  elements: dict
placement_warnings:
  description: Placement goals that could not be met, with the reason (also shown as warnings).
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

from ansible_collections.redisops.cluster.plugins.module_utils._client import observe_nodes
from ansible_collections.redisops.cluster.plugins.module_utils._change import apply_plan, change_argument_spec
from ansible_collections.redisops.cluster.plugins.module_utils._module import (
    ModuleFailure, connection_options, run_module, seed_addresses,
)
from ansible_collections.redisops.cluster.plugins.module_utils._planner import plan_create


def create(module):
    if not module.params["nodes"]:
        raise ModuleFailure("nodes: list every node of the new cluster")
    options = connection_options(module.params)
    state = observe_nodes(seed_addresses(module.params), options)
    plan = plan_create(state, module.params["replicas"], module.params["min_masters"])
    return apply_plan(module, state, plan, options)


def main():
    spec = change_argument_spec()
    spec.update(replicas=dict(type="int", default=1), min_masters=dict(type="int", default=3))
    run_module(spec, create, supports_check_mode=True)


if __name__ == "__main__":
    main()
