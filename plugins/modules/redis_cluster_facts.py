#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_cluster_facts
short_description: Observe a Redis Cluster and report its topology and health
version_added: 0.1.0
description:
  - Reads every node of a Redis Cluster in parallel, starting from one or more seed nodes and
    discovering the rest from their views, and returns the topology and health findings as
    C(ansible_facts.redis_cluster).
  - Works on fresh, unformed nodes too (RV(ansible_facts.redis_cluster.state=not_configured)).
  - Unreachable or failing nodes are reported as findings, not as a module failure. The module
    fails when no seed can be reached or a node is not in cluster mode.
  - Read-only. Sends C(CLUSTER NODES), C(CLUSTER INFO) and C(INFO) to each node, and with
    O(deep_scan=true) one pipeline of C(CLUSTER COUNTKEYSINSLOT) per master.
author:
  - redisops.cluster maintainers (@redisops)
extends_documentation_fragment:
  - redisops.cluster.connection
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module does not return a diff.
  facts:
    support: full
    description: Returns the cluster as C(ansible_facts.redis_cluster).
options:
  deep_scan:
    description:
      - Also look for keys stored in slots a master does not serve (the C(multiple_owners)
        finding after a botched migration or a manual write with C(CLUSTER SETSLOT)), and for keys a replica
        holds in slots its master does not serve (the C(replica_stray_keys) finding).
      - Costs one pipelined C(CLUSTER COUNTKEYSINSLOT) per slot not served by the master, per node.
    type: bool
    default: false
  imbalance_threshold:
    description:
      - Report the C(imbalance) finding when a master's slot count deviates more than this
        many percent from an even share.
    type: float
    default: 2.0
seealso:
  - name: Redis Cluster specification
    description: How nodes, slots, epochs and failure flags work.
    link: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/
"""

EXAMPLES = r"""
- name: Observe the cluster from one seed
  redisops.cluster.redis_cluster_facts:
    login_host: 10.0.0.11
    login_port: 6379

- name: Stop when the cluster is not healthy
  ansible.builtin.assert:
    that: ansible_facts.redis_cluster.state == 'ok'
    fail_msg: "{{ ansible_facts.redis_cluster.findings | map(attribute='message') | list }}"

- name: Observe with labels for the anti-affinity checks, TLS and an ACL user
  redisops.cluster.redis_cluster_facts:
    nodes:
      - {host: 10.0.1.11, port: 6379, zone: eu-1a}
      - {host: 10.0.2.11, port: 6379, zone: eu-1b}
      - {host: 10.0.3.11, port: 6379, zone: eu-1c}
    login_user: ops
    login_password: "{{ vault_redis_ops_password }}"
    tls: true
    ca_certs: /etc/redis/tls/ca.pem
    deep_scan: true

- name: Report the nodes that serve no slot
  ansible.builtin.debug:
    msg: "{{ ansible_facts.redis_cluster.nodes | selectattr('role', 'eq', 'master') | selectattr('slot_count', 'eq', 0) | map(attribute='port') | list }}"
"""

RETURN = r"""
elapsed_ms:
  description: Time the module spent observing, in milliseconds.
  returned: always
  type: int
  sample: 38
ansible_facts:
  description: Facts to add to the host's facts.
  returned: success
  type: complex
  contains:
    redis_cluster:
      description: The cluster as observed.
      returned: success
      type: complex
      contains:
        state:
          description:
            - V(not_configured) for fresh nodes that form no cluster yet, V(ok), V(degraded) (serving
              all slots but with findings) or V(failed) (C(cluster_state:fail) on a node, or slots
              not served).
          type: str
          sample: ok
        cluster_state:
          description: C(cluster_state) of CLUSTER INFO on the first reachable member.
          type: str
          sample: ok
        current_epoch:
          description: Highest C(cluster_current_epoch) seen.
          type: int
          sample: 6
        slots_covered:
          description: Slots served by some master in the majority view.
          type: int
          sample: 16384
        masters:
          description: Number of masters.
          type: int
          sample: 3
        replicas:
          description: Number of replicas.
          type: int
          sample: 3
        reachable_nodes:
          description: Number of nodes that answered.
          type: int
          sample: 6
        imbalance_pct:
          description: Largest deviation of a healthy master's slot count from an even share, in percent.
          type: float
          sample: 0.01
        nodes:
          description: Every node known to any reachable node, ordered by address.
          type: list
          elements: dict
          contains:
            id:
              description: Node id (40 hex characters).
              type: str
            host:
              description: Address the cluster announces for the node.
              type: str
            port:
              description: Client port.
              type: int
            bus_port:
              description: Cluster bus port.
              type: int
            hostname:
              description: Announced hostname or the C(hostname) label, empty when neither is set.
              type: str
            labels:
              description: Labels given in O(nodes) (C(zone), C(rack), C(hostname)).
              type: dict
            role:
              description: V(master) or V(replica).
              type: str
            master_id:
              description: The master's id for a replica, null for a master.
              type: str
            flags:
              description: Flags other than C(myself) (C(master), C(slave), C(fail), C(fail?), C(handshake), C(noaddr), C(nofailover)).
              type: list
              elements: str
            link_state:
              description: C(connected) or C(disconnected), as the observing node sees it.
              type: str
            reachable:
              description: Whether the module could read the node itself.
              type: bool
            config_epoch:
              description: The node's config epoch.
              type: int
            slots:
              description: Slot ranges served, as C([first, last]) pairs.
              type: list
              elements: list
            slot_count:
              description: Number of slots served.
              type: int
            migrating:
              description: C([slot, target id]) pairs of slots open for migration out of this node.
              type: list
              elements: list
            importing:
              description: C([slot, source id]) pairs of slots open for import into this node.
              type: list
              elements: list
            keys:
              description: Keys stored (null when not reachable).
              type: int
            used_memory:
              description: C(used_memory) in bytes (null when not reachable).
              type: int
            redis_version:
              description: C(redis_version) of the node's C(INFO server) (null when not reachable). Valkey reports
                V(7.2.4) there whatever its own version; see RV(ansible_facts.redis_cluster.nodes[].server_version).
              type: str
            server_name:
              description: The server, V(redis) or V(valkey) (C(server_name) of C(INFO server), which only Valkey
                reports; null when not reachable).
              type: str
            server_version:
              description: The server's own version, C(valkey_version) for Valkey and C(redis_version) for Redis
                (null when not reachable).
              type: str
            cluster_state:
              description: C(cluster_state) of the node's own C(CLUSTER INFO) (null when not reachable).
              type: str
            loading:
              description: Whether the node is still loading its data set from disk (null when not reachable).
              type: bool
            master_link_status:
              description: A replica's link to its master as the replica reports it, V(up) or V(down) (null for
                masters and unreachable replicas).
              type: str
            master_sync_in_progress:
              description: Whether a replica is in a full sync from its master (null for masters and unreachable
                replicas).
              type: bool
        findings:
          description:
            - Health findings, most serious first. C(kind) is one of V(node_unreachable),
              V(node_failing), V(node_not_joined), V(inconsistent_config), V(uncovered_slots),
              V(multiple_owners), V(replica_stray_keys), V(open_slot), V(master_without_replica),
              V(anti_affinity), V(imbalance).
          type: list
          elements: dict
          contains:
            kind:
              description: Stable name of the finding.
              type: str
            severity:
              description: V(critical), V(warning) or V(info).
              type: str
            message:
              description: What is wrong, naming nodes as C(host:port (id prefix)).
              type: str
            nodes:
              description: Ids of the nodes concerned.
              type: list
              elements: str
            slots:
              description: Slot ranges concerned, as C([first, last]) pairs.
              type: list
              elements: list
  sample:
    redis_cluster:
      state: ok
      slots_covered: 16384
      masters: 3
      replicas: 3
      findings: []
"""

from ansible_collections.redisops.cluster.plugins.module_utils._facts import gather_facts
from ansible_collections.redisops.cluster.plugins.module_utils._module import (
    ModuleFailure, connection_options, run_module, seed_addresses,
)


def observe(module):
    if module.params["imbalance_threshold"] < 0:
        raise ModuleFailure("imbalance_threshold must be 0 or more percent, got %s" % module.params["imbalance_threshold"])
    facts = gather_facts(seed_addresses(module.params), connection_options(module.params),
                         deep_scan=module.params["deep_scan"],
                         imbalance_threshold=module.params["imbalance_threshold"])
    return {"changed": False, "ansible_facts": {"redis_cluster": facts}}


def main():
    run_module(
        dict(deep_scan=dict(type="bool", default=False), imbalance_threshold=dict(type="float", default=2.0)),
        observe,
        supports_check_mode=True,
    )


if __name__ == "__main__":
    main()
