# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Readable views of redis_cluster_facts for the playbooks' output: the filters node_table and finding_line."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.redisops.cluster.plugins.module_utils._topology import format_address

COLUMNS = ("node", "role", "master", "zone", "rack", "host", "slots", "keys", "memory", "flags")


def _ranges_text(ranges) -> str:
    text = ",".join(str(first) if first == last else "%d-%d" % (first, last) for first, last in ranges)
    return text if len(text) <= 24 else text[:21] + "..."


def _address(node: dict) -> str:
    return format_address(node["host"], node["port"])


def _row(node: dict, addresses: dict) -> tuple:
    labels = node.get("labels") or {}
    slots = "%d %s" % (node["slot_count"], _ranges_text(node["slots"])) if node["slot_count"] else "-"
    memory = node.get("used_memory")
    return (
        _address(node), node["role"], addresses.get(node.get("master_id"), "-"),
        labels.get("zone", "-"), labels.get("rack", "-"), labels.get("hostname", "-"), slots,
        "-" if node.get("keys") is None else str(node["keys"]),
        "-" if memory is None else "%.1fM" % (memory / 1048576.0),
        ",".join(node.get("flags") or []) or "-",
    )


def node_table(facts) -> list:
    """redis_cluster_facts' ansible_facts.redis_cluster as lines of a table, one node per line, masters first."""
    try:
        nodes = facts["nodes"]
        addresses = {node["id"]: _address(node) for node in nodes}
        ordered = sorted(nodes, key=lambda node: (node["role"] != "master", _address(node)))
        rows = [COLUMNS] + [_row(node, addresses) for node in ordered]
    except (KeyError, TypeError) as error:
        raise AnsibleFilterError("node_table expects the facts of redis_cluster_facts (missing %s)" % error) from None
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def finding_line(finding) -> str:
    """One finding of redis_cluster_facts as '[severity] kind: message'."""
    try:
        return "[%s] %s: %s" % (finding["severity"], finding["kind"], finding["message"])
    except (KeyError, TypeError):
        raise AnsibleFilterError("finding_line expects one finding of redis_cluster_facts, got %r" % (finding,)) from None


class FilterModule:
    def filters(self):
        return {"node_table": node_table, "finding_line": finding_line}
