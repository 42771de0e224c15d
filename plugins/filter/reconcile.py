# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reconcile playbook's decisions from the agents' facts: the filter reconcile_plan."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.redisops.cluster.plugins.filter.inventory import host_nodes
from ansible_collections.redisops.cluster.plugins.module_utils._reconcile import (
    HostReport, InventoryInstance, ReconcileError, Settings, decide,
)
from ansible_collections.redisops.cluster.plugins.module_utils._shares import DEFAULT_THRESHOLD


def _report(name: str, host_vars) -> HostReport:
    instances = tuple(InventoryInstance(host=name, address=node["host"], port=node["port"],
                                        hostname=node.get("hostname", ""), rack=node.get("rack", ""),
                                        zone=node.get("zone", ""))
                      for node in host_nodes(host_vars, name))
    facts = (host_vars.get("ansible_local") or {}).get("redis_cluster")
    return HostReport(name=name, instances=instances, facts=facts if isinstance(facts, dict) else None)


def reconcile_plan(hosts, hostvars, now, min_nodes=None, replicas=1, threshold=DEFAULT_THRESHOLD,
                   stale_intervals=3) -> dict:
    """The cluster's hosts (their ansible_local.redis_cluster facts and inventory instances) -> refused hosts,
    decisions with reasons, notes and the history record."""
    if isinstance(hosts, str):
        hosts = [hosts]
    try:
        reports = [_report(name, hostvars[name]) for name in hosts]
        settings = Settings(min_nodes=int(min_nodes if min_nodes is not None
                                          else sum(len(report.instances) for report in reports)),
                            replicas=int(replicas), threshold=float(threshold), stale_intervals=int(stale_intervals))
        return decide(reports, str(now), settings).as_dict()
    except KeyError as error:
        raise AnsibleFilterError("reconcile_plan: %s is not a host of the inventory" % error) from None
    except (ReconcileError, ValueError) as error:
        raise AnsibleFilterError("reconcile_plan: %s" % error) from None


class FilterModule:
    def filters(self):
        return {"reconcile_plan": reconcile_plan}
