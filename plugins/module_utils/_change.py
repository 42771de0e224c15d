# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared tail of every module that changes a cluster: stale-plan check, check mode, apply, report. Private to redisops.cluster."""

from __future__ import annotations

import time

from ._client import ConnectionOptions, observe_nodes
from ._executor import ExecutionError, Executor
from ._module import ModuleFailure, elapsed_ms
from ._findings import assess
from ._topology import state_id, topology_summary


def change_argument_spec() -> dict:
    """Options of every module that changes the cluster (documented in the redisops.cluster.change fragment)."""
    return dict(
        wait_timeout=dict(type="float", default=60.0),
        expect_state_id=dict(type="str"),
    )


def check_request(params: dict, state) -> str:
    """The state's id, once wait_timeout is sound and the state is the one approved (expect_state_id): checked
    before the first write."""
    if params["wait_timeout"] <= 0:
        raise ModuleFailure("wait_timeout must be a positive number of seconds, got %s" % params["wait_timeout"])
    planned_from = state_id(state)
    if params["expect_state_id"] and params["expect_state_id"] != planned_from:
        raise ModuleFailure("the cluster changed since the plan was approved (expect_state_id %s, now %s); "
                            "nothing was done - review the new plan in check mode"
                            % (params["expect_state_id"], planned_from), state_id=planned_from)
    return planned_from


def apply_plan(module, state, plan, options: ConnectionOptions, inspect=None, checked_earlier: bool = False,
               **executor_settings) -> dict:
    """The shared tail of every changing module: refuse a stale plan, report it (check mode) or run it, observe again.

    state carries what its findings need (e.g. key counts); inspect(state) -> state adds the same to the
    fresh observation taken after the change. checked_earlier: check_request passed on the state this run
    started from, before earlier writes of the same run changed it.
    """
    params = module.params
    planned_from = state_id(state) if checked_earlier else check_request(params, state)
    for warning in plan.warnings:
        module.warn(warning)
    result = {"changed": not plan.empty, "plan": plan.describe(), "plan_steps": plan.as_list(),
              "state_id": planned_from, "before": topology_summary(state), "placement_warnings": list(plan.warnings)}
    if module.check_mode or plan.empty:
        result["after"] = result["before"]
        result["findings"] = [finding.as_dict() for finding in assess(state)]
        return result
    # Only the nodes that answered take part: an unreachable one is what a plan may be working around.
    addresses = tuple(obs.address for obs in state.reachable)
    started = time.monotonic()
    executor = Executor(addresses, options, params["wait_timeout"], **executor_settings)
    try:
        result["completed"] = executor.run(plan)
    except ExecutionError as exc:
        raise ModuleFailure("%s; nothing after this step was done, and a rerun continues from the live state"
                            % exc, changed=exc.wrote, completed=exc.completed, plan=plan.describe(),
                            state_id=planned_from) from None
    result["apply_ms"] = elapsed_ms(started)
    result["keys_moved"] = executor.keys_moved
    # A node the plan removed is no longer among the executor's nodes.
    after = observe_nodes(executor.addresses, options)
    result["after"] = topology_summary(after)
    result["findings"] = [finding.as_dict() for finding in assess(inspect(after) if inspect else after)]
    return result
