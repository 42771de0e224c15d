# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Observe a cluster and build its facts: shared by redis_cluster_facts and the agent. Private to redisops.cluster.

Imports nothing from Ansible, so the agent runs it as plain Python.
"""

from __future__ import annotations

from ._client import ConnectionOptions, observe_cluster, require_usable, scan_foreign_keys
from ._topology import assess, cluster_facts


def gather_facts(seeds, options: ConnectionOptions, deep_scan: bool = False, imbalance_threshold: float = 2.0) -> dict:
    state = observe_cluster(seeds, options)
    require_usable(state)
    if deep_scan:
        state = scan_foreign_keys(state, options)
    return cluster_facts(state, assess(state, imbalance_threshold))
