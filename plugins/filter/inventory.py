# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster's nodes as the inventory describes them: the filters inventory_nodes and inventory_node_hosts."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.redisops.cluster.plugins.module_utils._topology import format_address

WILDCARDS = ("*", "0.0.0.0", "::", "::*")


def node_address(host_vars, inventory_hostname: str) -> str:
    """redis_cluster_address, else redis_node_bind's first address that is not a wildcard, else ansible_host,
    else the inventory name: the address the other nodes and the modules reach this host's instances by."""
    explicit = host_vars.get("redis_cluster_address")
    if explicit:
        return str(explicit)
    for address in str(host_vars.get("redis_node_bind") or "").split():
        address = address.lstrip("-")
        if address not in WILDCARDS:
            return address
    return str(host_vars.get("ansible_host") or inventory_hostname)


def host_ports(host_vars, inventory_hostname: str) -> list:
    ports = host_vars.get("redis_node_ports", [6379])
    if isinstance(ports, (str, int)) or not all(str(port).isdigit() for port in ports):
        raise AnsibleFilterError("redis_node_ports of %s must be a list of port numbers, got %r"
                                 % (inventory_hostname, ports))
    return [int(port) for port in ports]


def host_nodes(host_vars, inventory_hostname: str) -> list:
    """One nodes entry per instance of the host: its address, port and fault domains."""
    labels = {"hostname": str(host_vars.get("redis_cluster_hostname") or inventory_hostname)}
    for label in ("zone", "rack"):
        value = host_vars.get("redis_cluster_" + label)
        if value not in (None, ""):
            labels[label] = str(value)
    address = node_address(host_vars, inventory_hostname)
    return [dict(labels, host=address, port=port) for port in host_ports(host_vars, inventory_hostname)]


def _hosts_vars(hosts, hostvars):
    if isinstance(hosts, str):
        hosts = [hosts]
    for name in hosts:
        try:
            yield name, hostvars[name]
        except KeyError:
            raise AnsibleFilterError("%s is not a host of the inventory" % name) from None


def inventory_nodes(hosts, hostvars) -> list:
    """Every instance of the hosts as redisops.cluster's nodes entries: {host, port, zone, rack, hostname}."""
    return [node for name, host_vars in _hosts_vars(hosts, hostvars) for node in host_nodes(host_vars, name)]


def inventory_node_hosts(hosts, hostvars) -> dict:
    """host:port of every instance of the hosts -> the inventory host that runs it."""
    return {format_address(node["host"], node["port"]): name
            for name, host_vars in _hosts_vars(hosts, hostvars) for node in host_nodes(host_vars, name)}


class FilterModule:
    def filters(self):
        return {"inventory_nodes": inventory_nodes, "inventory_node_hosts": inventory_node_hosts}
