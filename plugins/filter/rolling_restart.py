# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The order of a rolling restart, the check before each of its steps and the wait after it: the filters
rolling_restart_plan, rolling_restart_stale and rolling_restart_pending."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.redisops.cluster.plugins.module_utils._rolling import (
    plan_rolling_restart, step_pending, step_stale,
)


def rolling_restart_plan(facts, node_hosts, allow_unprotected: bool = False, failback: bool = True,
                         hosts=None) -> dict:
    """redis_cluster_facts' facts -> {steps, blockers, warnings} of a rolling restart of every node (of the hosts)."""
    try:
        return plan_rolling_restart(facts, dict(node_hosts), bool(allow_unprotected), bool(failback),
                                    None if hosts is None else list(hosts)).as_dict()
    except (KeyError, TypeError, AttributeError) as error:
        raise AnsibleFilterError("rolling_restart_plan expects the facts of redis_cluster_facts and "
                                 "redis_cluster_node_hosts (%s: %s)" % (type(error).__name__, error)) from None


def rolling_restart_pending(facts, step) -> list:
    """What is not yet true after a step of rolling_restart_plan; [] once the next step may begin."""
    try:
        return step_pending(facts, step)
    except (KeyError, TypeError, AttributeError) as error:
        raise AnsibleFilterError("rolling_restart_pending expects the facts of redis_cluster_facts and a step of "
                                 "rolling_restart_plan (%s: %s)" % (type(error).__name__, error)) from None


def rolling_restart_stale(facts, step) -> list:
    """Why a step of rolling_restart_plan no longer fits the cluster (its node is not the master or replica the plan
    found); [] when it may run."""
    try:
        return step_stale(facts, step)
    except (KeyError, TypeError, AttributeError) as error:
        raise AnsibleFilterError("rolling_restart_stale expects the facts of redis_cluster_facts and a step of "
                                 "rolling_restart_plan (%s: %s)" % (type(error).__name__, error)) from None


class FilterModule:
    def filters(self):
        return {"rolling_restart_plan": rolling_restart_plan, "rolling_restart_pending": rolling_restart_pending,
                "rolling_restart_stale": rolling_restart_stale}
