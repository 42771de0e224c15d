# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend of redis_cluster_failover. Private to redisops.cluster.

observe -> refuse what cannot or should not be done -> decide the failovers (_failover, pure) -> report them (check
mode) or carry them out -> observe again.
"""

from __future__ import annotations

from ._change import apply_plan
from ._client import observe_cluster, require_usable
from ._failover import plan_master_failover, plan_promotion, plan_restore
from ._module import ModuleFailure, connection_options, seed_addresses
from ._topology import named_nodes


def run_failover(module) -> dict:
    params = module.params
    _refuse_conflicts(params)
    options = connection_options(params)
    state = observe_cluster(seed_addresses(params), options)
    require_usable(state)
    if state.not_configured:
        raise ModuleFailure("the nodes form no cluster yet; form one with redisops.cluster.redis_cluster_create")
    decision = _decide(params, state)
    result = apply_plan(module, state, decision.plan, options)
    result["failovers"] = list(decision.failovers)
    result["placement"] = decision.placement
    return result


def _refuse_conflicts(params: dict) -> None:
    """Options that contradict each other fail before anything is read."""
    if params["max_lag"] < 0:
        raise ModuleFailure("max_lag must be 0 or more bytes, got %d" % params["max_lag"])
    if params["placement"] == "restore":
        named = [option for option in ("node", "master") if params[option]]
        if named:
            raise ModuleFailure("placement restore chooses the shards to fail over itself; leave out %s"
                                % " and ".join(named))
        if params["mode"] != "default":
            raise ModuleFailure("placement restore plans default failovers only, which lose no write; leave out "
                                "mode %s" % params["mode"])
    elif not params["node"] and not params["master"]:
        raise ModuleFailure("give node (the replica to promote), master (to promote its best replica), or "
                            "placement: restore")


def _decide(params: dict, state):
    if params["placement"] == "restore":
        return plan_restore(state, params["max_lag"])
    option = "node" if params["node"] else "master"
    named = _named_node(state, option, params[option])
    if option == "node":
        return plan_promotion(state, named, params["mode"], params["max_lag"])
    return plan_master_failover(state, named, params["mode"], params["max_lag"])


def _named_node(state, option: str, name: str):
    """The one node name means (node id, 8+ character id prefix, or host:port), unreachable ones included."""
    found = named_nodes(state.nodes, name)
    if len(found) != 1:
        wanted = state.replicas if option == "node" else [node for node in state.masters if node.entry.slots]
        raise ModuleFailure("%s: %r names %s node of the cluster; give a node id (or 8+ characters of one) or the "
                            "host:port of one of its %s: %s"
                            % (option, name, "no" if not found else "more than one",
                               "replicas" if option == "node" else "masters",
                               ", ".join(node.address for node in wanted) or "none"))
    return found[0]
