#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_failover
short_description: Promote a replica to master, for maintenance or to restore anti-affinity
version_added: 0.1.0
description:
  - Promotes the replica O(node), or the best replica of the master O(master), with C(CLUSTER FAILOVER), waits
    (within O(wait_timeout)) until C(ROLE) says master on the replica and, when the old master answers, replica on
    the old master, then until every node agrees on roles and slots.
  - The best replica of a master is, among those that may take over in the chosen O(mode), the one with the
    smallest replication offset lag, then the one whose promotion leaves the better placement (fewest replicas
    sharing a C(hostname), C(rack) or C(zone) with their master, then fewest masters beyond (M-1)//2 in one
    domain, so that losing a domain leaves a majority to vote), then the smallest C(host:port).
  - A default failover loses no write - the master holds clients back until the replica has every write - and goes
    ahead only when every node reports C(cluster_state:ok), the master answers and nobody flags it failing, the
    replica is synced (nobody flags it C(fail) or C(fail?), C(master_link_status:up), no sync in progress) and at
    most O(max_lag) bytes behind. Each unmet condition fails the task, before any write, naming the node and what
    to do.
  - O(placement=restore) fails over, by default failovers, wherever promoting a synced replica lowers the
    placement cost above (failures often leave a master beside its replica's domain, or several masters in one
    zone); a second run plans nothing.
  - Idempotent - a O(node) that is already a master serving slots, or a O(master) that is already a replica (its
    failover happened), reports RV(changed=false).
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
  - redisops.cluster.change
attributes:
  check_mode:
    support: full
    description: Returns the plan (which replica takes over from which master, and its lag) and writes nothing.
  diff_mode:
    support: none
    description: The module does not return a diff.
options:
  node:
    description:
      - The replica to promote, by C(host:port) or node id (or its first 8+ characters).
      - A master that serves no slot is refused (there is nothing for it to take over).
      - Mutually exclusive with O(master) and O(placement=restore).
    type: str
  master:
    description:
      - Promote the best replica of this master (by C(host:port) or node id; an unreachable master by either, as the
        other nodes know it).
      - A master that is a replica already, or serves no slot (as a dead master whose replica took over), needs no
        failover - RV(changed=false).
      - Mutually exclusive with O(node) and O(placement=restore).
    type: str
  placement:
    description:
      - V(keep) fails over only what O(node) or O(master) names.
      - V(restore) plans default failovers for every shard where promoting one of its synced replicas lowers the
        placement cost, one greedy change at a time until none lowers it; labels come from O(nodes) entries
        (C(zone), C(rack), C(hostname); the host defaults to the node's address), so list every node there.
    type: str
    choices: [keep, restore]
    default: keep
  mode:
    description:
      - V(default) - the master agrees and holds clients back until the replica has every write; nothing is lost.
        Needs the master up and a majority of masters to vote.
      - V(force) - for a master that is down or cannot agree; the replica does not wait for writes it has not
        received (they are lost) but still needs a majority of masters to vote.
      - V(takeover) - needs no vote at all, for when most masters are down (a lost zone); the replica takes a new
        config epoch on its own.
      - V(force) and V(takeover) are refused when a default failover of the replica could go ahead (its master
        answers, nobody flags it, the cluster is ok, the replica is synced within O(max_lag)) - use V(default) then.
      - With several masters down, run the task once per master; the run that leaves none down also waits for the
        cluster to settle.
    type: str
    choices: [default, force, takeover]
    default: default
  max_lag:
    description:
      - Bytes of replication offset a replica may be behind its master for a default failover (the master's
        C(master_repl_offset) minus the replica's C(slave_repl_offset), as read by the module).
      - The default, 1 MiB, is Redis' default replication backlog (C(repl-backlog-size)) - a replica further behind
        could not even resume its link by a partial resync, while one within it catches up in milliseconds, and its
        master holds clients back only that long.
    type: int
    default: 1048576
seealso:
  - module: redisops.cluster.redis_cluster_facts
  - module: redisops.cluster.redis_cluster_fix
"""

EXAMPLES = r"""
- name: Promote a replica before maintenance of its master's host
  redisops.cluster.redis_cluster_failover:
    login_host: 10.0.0.11
    node: 10.0.0.14:6379

- name: Promote the best replica of a master that is down
  redisops.cluster.redis_cluster_failover:
    login_host: 10.0.0.11
    master: 10.0.0.12:6379
    mode: force

- name: Restore anti-affinity after failures, by zone
  redisops.cluster.redis_cluster_failover:
    nodes:
      - {host: 10.0.1.11, zone: a}
      - {host: 10.0.1.12, zone: a}
      - {host: 10.0.2.11, zone: b}
      - {host: 10.0.2.12, zone: b}
      - {host: 10.0.3.11, zone: c}
      - {host: 10.0.3.12, zone: c}
    placement: restore
"""

RETURN = r"""
changed:
  description: Whether a replica was (or in check mode, would be) promoted.
  returned: always
  type: bool
plan:
  description: The steps in words.
  returned: success
  type: list
  elements: str
  sample: ["127.0.0.1:7004 (a1b2c3d4): fail over from master 127.0.0.1:7000 (e5f6a7b8) (0 bytes behind), then check
            ROLE on both", "wait until every node agrees on roles and slots"]
plan_steps:
  description: The steps in machine form.
  returned: success
  type: list
  elements: dict
failovers:
  description: One entry per failover planned, with C(replica), C(replica_id), C(master), C(master_id), C(mode) and
    C(lag) (bytes behind, -1 when unknown).
  returned: success
  type: list
  elements: dict
placement:
  description: The placement cost before and after the planned failovers, as C(before) and C(after), each with
    C(replicas_sharing_a_domain) and C(masters_over_domain_cap); empty when O(node) or O(master) needs no failover.
  returned: success
  type: dict
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
  description: Warnings about the plan, such as a final wait left out because other masters are down.
  returned: success
  type: list
  elements: str
keys_moved:
  description: Always 0 for this module (a failover moves no key).
  returned: when the plan was applied
  type: int
apply_ms:
  description: Milliseconds spent failing over.
  returned: when the plan was applied
  type: int
elapsed_ms:
  description: Milliseconds the module ran.
  returned: always
  type: int
"""

from ansible_collections.redisops.cluster.plugins.module_utils._change import change_argument_spec
from ansible_collections.redisops.cluster.plugins.module_utils._failover import DEFAULT_MAX_LAG, MODES
from ansible_collections.redisops.cluster.plugins.module_utils._module import run_module
from ansible_collections.redisops.cluster.plugins.module_utils._promote import run_failover


def main():
    spec = change_argument_spec()
    spec.update(
        node=dict(type="str"),
        master=dict(type="str"),
        placement=dict(type="str", default="keep", choices=["keep", "restore"]),
        mode=dict(type="str", default="default", choices=list(MODES)),
        max_lag=dict(type="int", default=DEFAULT_MAX_LAG),
    )
    run_module(spec, run_failover, supports_check_mode=True, mutually_exclusive=[("node", "master")])


if __name__ == "__main__":
    main()
