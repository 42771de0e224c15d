#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_fix
short_description: Repair a Redis Cluster's slot configuration without losing keys
version_added: 0.1.0
description:
  - Observes the whole cluster from the seeds, counts keys where it matters, decides one owner for every slot
    that needs a repair, and applies the plan in one run; a second run reports no change.
  - A slot is served only by a reachable master that claims it in its own view; what the other nodes name is
    hearsay. The owner is always a reachable master not flagged C(fail). Service is restored first (the owner
    claims the slot, and every master that sees a slot unserved is told its owner), then keys move, then open
    sides are closed and the owner takes a new config epoch so its claim wins everywhere.
  - B(Open slots) (left migrating or importing by an interrupted move) - when the owner migrates the
    slot to a node that imports it, or whose keys already reached that node, the move is finished
    by the migration engine; otherwise the slot is closed where it is and keys that reached other nodes go
    back to the owner.
  - B(Half-finished hand-overs) - when C(SETSLOT NODE) reached only one side of a move, the node holding the
    keys (or, when the target already claims it, the claim with the highest config epoch) keeps the slot.
  - B(Uncovered slots) - a slot no reachable master serves goes to the master holding its keys (the one with
    most keys when several do, the others' keys moved to it), else to the master the other nodes name when it
    only dropped the slot from its own view, else to the master with the fewest slots, so shares stay even.
  - B(Multiple owners) - a slot several masters claim stays with the claim of the highest config epoch (the one
    Redis lets win), the others' keys moved to it; keys a master holds in a slot another master serves are moved
    to the owner; views that name the wrong owner are corrected.
  - B(Config epoch collisions) - masters sharing a config epoch take new ones.
  - B(Stray keys on replicas) - keys a replica holds in slots its master does not serve (left by Redis before
    7.2, which drops a lost slot's keys on the master only) are deleted through the master, last; the slots' owners
    keep their own keys. Clients never read them, but a promoted replica would bring them back.
  - B(Ghost nodes) with O(forget_failed=true) - nodes flagged C(fail) or C(noaddr) that serve no
    slot are forgotten on every node at once, inside Redis' 60-second forget window.
  - Refuses, changing nothing, when slots are served by an unreachable master, unless
    O(allow_unreachable_masters=true) (their keys are lost).
  - A key present on both sides of a move with different values stops the run and is named, unless O(replace=true).
  - A run that fails after it wrote anything reports C(changed=true); a wait that cannot succeed (slots no
    master claims, a node that will never accept a claim) fails at once, naming the slots and nodes.
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
  - redisops.cluster.change
attributes:
  check_mode:
    support: full
    description: Returns the findings and the plan, and writes nothing.
  diff_mode:
    support: none
    description: The module does not return a diff.
options:
  forget_failed:
    description:
      - Forget nodes that the cluster flags C(fail) or C(noaddr) and that serve no slot.
      - Off by default, because a node that is merely rebooting must not be expelled.
    type: bool
    default: false
  allow_unreachable_masters:
    description:
      - Give the slots of masters that cannot be reached (and have no replica to take over) to
        reachable masters. The keys the unreachable master held are lost.
    type: bool
    default: false
  replace:
    description: Overwrite keys that exist on the target of a move with a different value.
    type: bool
    default: false
  pipeline:
    description: Keys per C(MIGRATE) call when keys move.
    type: int
    default: 1000
  timeout:
    description: C(MIGRATE) timeout in milliseconds.
    type: int
    default: 60000
seealso:
  - module: redisops.cluster.redis_cluster_facts
"""

EXAMPLES = r"""
- name: Show what fix would do
  redisops.cluster.redis_cluster_fix:
    login_host: 10.0.0.11
  check_mode: true
  register: fix_plan

- name: Repair the cluster, and forget nodes that were removed for good
  redisops.cluster.redis_cluster_fix:
    login_host: 10.0.0.11
    forget_failed: true
"""

RETURN = r"""
changed:
  description: Whether the cluster was (or in check mode, would be) changed.
  returned: always
  type: bool
findings_before:
  description: Health findings before the repair (as in redisops.cluster.redis_cluster_facts, with stray keys counted).
  returned: success
  type: list
  elements: dict
findings_after:
  description: Health findings after the repair (equal to RV(findings_before) in check mode).
  returned: success
  type: list
  elements: dict
plan:
  description: The repair steps, in order, in words.
  returned: success
  type: list
  elements: str
  sample: ["127.0.0.1:7001 (a1b2c3d4): claim slot 609 (its view names another owner)",
           "127.0.0.1:7002 (c9d8e7f6): move 12 key(s) of slot 42 to 127.0.0.1:7000 (e5f6a7b8)"]
plan_steps:
  description: The steps in machine form.
  returned: success
  type: list
  elements: dict
completed:
  description: Steps done (also returned when a step fails; then RV(changed) says whether anything was written).
  returned: when the plan was applied
  type: list
  elements: str
keys_moved:
  description: Keys moved between nodes.
  returned: when the plan was applied
  type: int
state_id:
  description: Digest of the topology the plan was made from, for O(expect_state_id).
  returned: always
  type: str
before:
  description: Masters with slots and replicas before the repair.
  returned: success
  type: dict
after:
  description: Masters with slots and replicas after the repair.
  returned: success
  type: dict
apply_ms:
  description: Milliseconds spent applying the plan.
  returned: when the plan was applied
  type: int
elapsed_ms:
  description: Milliseconds the module ran.
  returned: always
  type: int
"""

from ansible_collections.redisops.cluster.plugins.module_utils._change import apply_plan, change_argument_spec
from ansible_collections.redisops.cluster.plugins.module_utils._client import (
    count_keys, observe_cluster, require_usable, scan_foreign_keys,
)
from ansible_collections.redisops.cluster.plugins.module_utils._module import (
    ModuleFailure, connection_options, run_module, seed_addresses,
)
from ansible_collections.redisops.cluster.plugins.module_utils._repair import FixOptions, fix_key_count_slots, plan_fix
from ansible_collections.redisops.cluster.plugins.module_utils._findings import assess


def fix(module):
    params = module.params
    if params["pipeline"] < 1 or params["timeout"] < 1:
        raise ModuleFailure("pipeline and timeout must be positive, got %d and %d" % (params["pipeline"], params["timeout"]))
    options = connection_options(params)
    state = observe_cluster(seed_addresses(params), options)
    require_usable(state)
    if state.not_configured:
        raise ModuleFailure("the nodes form no cluster yet; form one with redisops.cluster.redis_cluster_create")
    counts = count_keys(state, options, fix_key_count_slots(state))
    state = scan_foreign_keys(state, options, counts)
    plan = plan_fix(state, counts, FixOptions(params["forget_failed"], params["allow_unreachable_masters"]))
    result = apply_plan(module, state, plan, options, inspect=lambda observed: scan_foreign_keys(observed, options),
                        pipeline=params["pipeline"], timeout_ms=params["timeout"], replace=params["replace"])
    result["findings_before"] = [finding.as_dict() for finding in assess(state)]
    result["findings_after"] = result.pop("findings")
    return result


def main():
    spec = change_argument_spec()
    spec.update(
        forget_failed=dict(type="bool", default=False),
        allow_unreachable_masters=dict(type="bool", default=False),
        replace=dict(type="bool", default=False),
        pipeline=dict(type="int", default=1000),
        timeout=dict(type="int", default=60000),
    )
    run_module(spec, fix, supports_check_mode=True)


if __name__ == "__main__":
    main()
