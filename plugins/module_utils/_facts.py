# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Observe a cluster and build its facts (the facts form): shared by redis_cluster_facts and the agent. Private to redisops.cluster.

Imports nothing from Ansible, so the agent runs it as plain Python.
"""

from __future__ import annotations

from ._client import ConnectionOptions, observe_cluster, require_usable, scan_foreign_keys
from ._findings import assess, imbalance_pct, overall_state
from ._slots import count_slots
from ._topology import ClusterState, Node, server_identity


def gather_facts(seeds, options: ConnectionOptions, deep_scan: bool = False, imbalance_threshold: float = 2.0) -> dict:
    state = observe_cluster(seeds, options)
    require_usable(state)
    if deep_scan:
        state = scan_foreign_keys(state, options)
    return cluster_facts(state, assess(state, imbalance_threshold))


def node_facts(node: Node) -> dict:
    info = node.observation.info if node.reachable else {}
    server_name, server_version = server_identity(info)
    entry = node.entry
    return {
        "id": node.id,
        "host": node.host,
        "port": node.port,
        "bus_port": entry.bus_port,
        "hostname": node.label_map.get("hostname", ""),
        "labels": node.label_map,
        "role": node.role,
        "master_id": entry.master_id or None,
        "flags": sorted(entry.flags - {"myself"}),
        "link_state": entry.link_state,
        "reachable": node.reachable,
        "config_epoch": entry.config_epoch,
        "slots": [list(r) for r in entry.slots],
        "slot_count": count_slots(entry.slots),
        "migrating": [[slot, partner] for slot, partner in entry.migrating],
        "importing": [[slot, partner] for slot, partner in entry.importing],
        "keys": node.observation.keys if node.reachable else None,
        "used_memory": info.get("used_memory"),
        "redis_version": info.get("redis_version"),
        "server_name": server_name,
        "server_version": server_version,
        "cluster_state": node.observation.cluster_info.get("cluster_state") if node.reachable else None,
        "loading": bool(info.get("loading")) if node.reachable else None,
        # A replica's own account of its link; null for masters and unreachable nodes.
        "master_link_status": info.get("master_link_status") if node.role == "replica" else None,
        "master_sync_in_progress": (bool(info.get("master_sync_in_progress"))
                                    if node.role == "replica" and node.reachable else None),
    }


def cluster_facts(state: ClusterState, findings) -> dict:
    infos = [obs.cluster_info for obs in state.configured]
    return {
        "state": overall_state(state, findings),
        "cluster_state": infos[0].get("cluster_state") if infos else None,
        "current_epoch": max((info.get("cluster_current_epoch", 0) for info in infos), default=0),
        "nodes": [node_facts(node) for node in state.nodes],
        "slots_covered": state.slots_covered,
        "masters": len(state.masters),
        "replicas": len(state.replicas),
        "reachable_nodes": sum(1 for node in state.nodes if node.reachable),
        "imbalance_pct": round(imbalance_pct(state), 2),
        "findings": [finding.as_dict() for finding in findings],
    }
