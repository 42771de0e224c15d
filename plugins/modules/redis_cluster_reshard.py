#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_reshard
short_description: Move exactly N slots, or named slots, to one master
version_added: 0.1.0
description:
  - Moves exactly O(slots) slots to the master O(to), from the masters in O(from) in proportion to
    what each holds, each giving one run of its slots with few keys, hot slots left in place
    (O(slot_choice)); or moves the slots in O(slot_list).
  - Refuses, changing nothing, when the sources hold fewer slots than asked (redis-cli moves fewer).
  - Idempotent with O(slot_list) - slots the target already serves are skipped. With a count, every
    run moves that many more slots; guard it with C(when) or use M(redisops.cluster.redis_cluster_rebalance).
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
  to:
    description: The master that receives the slots, by node id (or its first 8+ characters) or C(host:port).
    type: str
    required: true
  from:
    description:
      - The masters that give slots, by node id or C(host:port); C(all) (the default) means every
        other master.
    type: list
    elements: str
    default: [all]
  slots:
    description: How many slots to move. Exactly one of O(slots) and O(slot_list) is required.
    type: int
  slot_list:
    description: The slots to move, as numbers or C(first-last) ranges.
    type: list
    elements: str
seealso:
  - module: redisops.cluster.redis_cluster_rebalance
"""

EXAMPLES = r"""
- name: Move 1000 slots from every other master to a new one
  redisops.cluster.redis_cluster_reshard:
    login_host: 10.0.0.11
    to: 10.0.0.17:6379
    slots: 1000

- name: Move a hot range from one master to another
  redisops.cluster.redis_cluster_reshard:
    login_host: 10.0.0.11
    to: 10.0.0.12:6379
    slot_list: ["100-199", "4242"]

- name: Move the 500 slots that hold the fewest keys from one master, wherever they lie
  redisops.cluster.redis_cluster_reshard:
    login_host: 10.0.0.11
    from: [10.0.0.13:6379]
    to: 10.0.0.17:6379
    slots: 500
    slot_choice: fewest_keys
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
from ansible_collections.redisops.cluster.plugins.module_utils._shares import reshard, reshard_slots
from ansible_collections.redisops.cluster.plugins.module_utils._slots import parse_slot_token, slots_from_ranges


def slot_numbers(items) -> list:
    try:
        return list(slots_from_ranges(parse_slot_token(str(item)) for item in items))
    except ValueError as exc:
        raise ModuleFailure("slot_list: %s; give slot numbers 0-16383 or first-last ranges" % exc) from None


def decide(params, state, holdings, key_counts):
    target = resolve_node(state, params["to"], "to").id
    if params["slot_list"] is not None:
        return reshard_slots(holdings, target, slot_numbers(params["slot_list"]))
    sources = None
    if params["from"] != ["all"]:
        sources = [resolve_node(state, name, "from").id for name in params["from"]]
    return reshard(holdings, target, params["slots"], sources, key_counts, params["slot_choice"])


def main():
    spec = change_argument_spec()
    spec.update(move_argument_spec())
    spec.update(
        to=dict(type="str", required=True),
        slots=dict(type="int"),
        slot_list=dict(type="list", elements="str"),
    )
    spec["from"] = dict(type="list", elements="str", default=["all"])
    run_module(spec, lambda module: run_moves(module, decide), supports_check_mode=True,
               required_one_of=[("slots", "slot_list")], mutually_exclusive=[("slots", "slot_list")])


if __name__ == "__main__":
    main()
