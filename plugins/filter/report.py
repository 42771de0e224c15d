# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster report filter: redis_cluster_facts and the reconcile history as one self-contained HTML page."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.redisops.cluster.plugins.module_utils._report import parse_history, render_report


def cluster_report(facts, history: str = "", cluster: str = "redis_cluster", generated_at: str = "",
                   history_source: str = "", history_limit: int = 500, imbalance_threshold: float = 2.0) -> str:
    """redis_cluster_facts' ansible_facts.redis_cluster (and the history's JSON Lines text) as an HTML page."""
    if not isinstance(facts, dict) or not isinstance(facts.get("nodes"), list):
        raise AnsibleFilterError("cluster_report expects the facts of redis_cluster_facts, got %r" % type(facts).__name__)
    return render_report(facts, parse_history(str(history or ""), int(history_limit)), cluster=str(cluster),
                         generated_at=str(generated_at), history_source=str(history_source),
                         imbalance_threshold=float(imbalance_threshold))


class FilterModule:
    def filters(self):
        return {"cluster_report": cluster_report}
