#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_rebalance
short_description: Move the fewest slots to give every master its weighted share
version_added: 0.1.0
description:
  - Computes each master's target share of the 16384 slots from O(weights) (exact, by largest
    remainder, so the targets sum to 16384) and moves the fewest slots that reach it - only masters
    above their target give, only masters below receive - each giving one run of its slots with few
    keys, hot slots left in place (O(slot_choice)).
  - Nothing moves while every master is within O(threshold) percent of its target (RV(changed=false)).
  - Online - clients keep reading and writing during the moves.
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
  - redisops.cluster.change
  - redisops.cluster.migration
  - redisops.cluster.migration.busy_keys
attributes:
  check_mode:
    support: full
    description: Returns the plan (slots and keys per move) and writes nothing.
  diff_mode:
    support: none
    description: The module does not return a diff.
options:
  weights:
    description:
      - Relative weights of masters, keyed by node id, C(host:port), or a label as C(zone=NAME),
        C(rack=NAME) or C(hostname=NAME) (labels come from O(nodes)). Masters not named weigh 1.
      - Weight 0 drains a master (moves all its slots away). A drained master usually turns into a replica
        of a master that took its slots; weight 0 for a replica is then already satisfied, so a rerun
        changes nothing.
    type: dict
    default: {}
  threshold:
    description:
      - Do nothing while every master's slot count is within this many percent of its target
        (deviation = |have - target| / target, where redis-cli divides by what the master has). A master
        with target 0 that holds slots is always over. Once any master is over, every master goes all
        the way to its target. V(0) rebalances on any deviation.
    type: float
    default: 2.0
  use_empty_masters:
    description:
      - Give masters that hold no slot a share. When false, they stay empty unless O(weights) names them
        (redis-cli leaves them out even then, and its default is the opposite - it needs
        C(--cluster-use-empty-masters)).
    type: bool
    default: true
  max_slots:
    description:
      - Move at most this many slots in one run (0 - no cap), taking from the masters furthest above
        their target first, so repeated runs converge.
    type: int
    default: 0
seealso:
  - module: redisops.cluster.redis_cluster_reshard
  - module: redisops.cluster.redis_cluster_facts
"""

EXAMPLES = r"""
- name: Spread the slots over all masters, including newly added empty ones
  redisops.cluster.redis_cluster_rebalance:
    login_host: 10.0.0.11

- name: Drain a master before removing it, following progress in a file
  redisops.cluster.redis_cluster_rebalance:
    login_host: 10.0.0.11
    weights:
      "10.0.0.14:6379": 0
    progress_file: /tmp/rebalance.progress
  async: 3600
  poll: 10

- name: Give the masters of zone a twice the share of the others
  redisops.cluster.redis_cluster_rebalance:
    nodes:
      - {host: 10.0.1.11, zone: a}
      - {host: 10.0.2.11, zone: b}
    weights:
      zone=a: 2
"""

RETURN = r"""
changed:
  description: Whether slots moved (or in check mode, would move).
  returned: always
  type: bool
plan:
  description:
    - The moves in words, with slot and key counts.
    - A move of many scattered slots lists the first ranges and how many there are; RV(plan_steps) has every slot.
  returned: success
  type: list
  elements: str
  sample: ["127.0.0.1:7000 (a1b2c3d4): move 1365 slot(s) 4096-5460 (5012 key(s)) to 127.0.0.1:7006 (e5f6a7b8)"]
plan_steps:
  description: The steps in machine form.
  returned: success
  type: list
  elements: dict
moves:
  description: One entry per move, with C(source), C(target), C(slots) and C(keys).
  returned: success
  type: list
  elements: dict
slots_moved:
  description: Slots moved in this run (0 in check mode).
  returned: success
  type: int
keys_moved:
  description: Keys moved in this run.
  returned: when the plan was applied
  type: int
finished_open_slots:
  description: Steps that finished slots an earlier, interrupted run left open.
  returned: success
  type: list
  elements: str
completed:
  description: Steps done (also returned when a step fails).
  returned: when the plan was applied
  type: list
  elements: str
state_id:
  description: Digest of the topology the plan was made from, for O(expect_state_id).
  returned: always
  type: str
before:
  description: Masters with slots and replicas before the run.
  returned: success
  type: dict
after:
  description: Masters with slots and replicas after the run.
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
  description: Milliseconds spent moving.
  returned: when the plan was applied
  type: int
elapsed_ms:
  description: Milliseconds the module ran.
  returned: always
  type: int
"""

from ansible_collections.redisops.cluster.plugins.module_utils._change import change_argument_spec
from ansible_collections.redisops.cluster.plugins.module_utils._module import ModuleFailure, run_module
from ansible_collections.redisops.cluster.plugins.module_utils._moves import move_argument_spec, resolve_node, run_moves
from ansible_collections.redisops.cluster.plugins.module_utils._topology import named_nodes
from ansible_collections.redisops.cluster.plugins.module_utils._shares import rebalance


def weights_by_id(state, weights: dict) -> dict:
    """weights keyed by node id, host:port or label=value -> keyed by node id."""
    resolved = {}
    for name, weight in weights.items():
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ModuleFailure("weights: %r must be a number, got %r" % (name, weight)) from None
        if "=" in name:
            label, _sep, value = name.partition("=")
            matched = [node for node in state.masters if node.label_map.get(label) == value]
            if not matched:
                raise ModuleFailure("weights: no master has label %s" % name)
        elif weight == 0 and _drained_replica(state, name):
            # A master drained by an earlier run has turned into a replica: it holds nothing, as asked.
            continue
        else:
            matched = [resolve_node(state, name, "weights")]
        for node in matched:
            resolved[node.id] = weight
    return resolved


def _drained_replica(state, name: str) -> bool:
    return any(node.role != "master" for node in named_nodes(state.nodes, name))


def decide(params, state, holdings, key_counts):
    return rebalance(holdings, weights_by_id(state, params["weights"]), params["threshold"], params["max_slots"],
                     key_counts, params["use_empty_masters"], params["slot_choice"])


def main():
    spec = change_argument_spec()
    spec.update(move_argument_spec())
    spec.update(
        weights=dict(type="dict", default={}),
        threshold=dict(type="float", default=2.0),
        use_empty_masters=dict(type="bool", default=True),
        max_slots=dict(type="int", default=0),
    )
    run_module(spec, lambda module: run_moves(module, decide), supports_check_mode=True)


if __name__ == "__main__":
    main()
