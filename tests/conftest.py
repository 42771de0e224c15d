# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared pytest setup: the collection on the import path, and real Redis nodes as fixtures."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

from playbook_runs import COLLECTIONS_PATH  # noqa: E402  (needs the path above)
from redis_harness import RedisNodes, form_cluster  # noqa: E402

sys.path.insert(0, COLLECTIONS_PATH)

# The files that take longest, longest first (worker seconds in a clean-clone CI run of 4f1a1f4). xdist hands a
# file to whichever worker is free in collection order, so the long ones start first and the short ones fill the
# gaps at the end, rather than a long file starting last on one worker while the other idles.
LONGEST_FIRST = (
    "test_rebalance.py",  # 440.4 (integration)
    "test_versions.py",  # 432.6
    "test_tls_acl.py",  # 384.4
    "test_rolling_faults.py",  # 318.6
    "test_node.py",  # 315.6 (integration)
    "test_roles_local.py",  # 280.7 (integration)
    "test_faults.py",  # 261.4
    "test_bad_input.py",  # 250.9
    "test_fix.py",  # 230.8 (integration)
    "test_playbook_operations.py",  # 222.7 (integration)
    "test_partitions.py",  # 209.5
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items[:] = sorted(items, key=lambda item: rank.get(os.path.basename(item.path), len(rank)))


@pytest.fixture
def fresh_nodes(request):
    """Factory: fresh cluster-enabled nodes, stopped after the test whatever happens."""
    started = []

    def start(count, **kwargs):
        nodes = RedisNodes(count, **kwargs)
        started.append(nodes)
        return nodes

    yield start
    for nodes in started:
        nodes.close()


@pytest.fixture
def cluster3(fresh_nodes):
    """A new cluster of 3 masters without replicas for one test (tests may break it)."""
    nodes = fresh_nodes(3)
    form_cluster(nodes.nodes, replicas=0)
    return nodes


@pytest.fixture
def cluster6(fresh_nodes):
    """A new 3 masters + 3 replicas cluster for one test (tests may break it)."""
    nodes = fresh_nodes(6)
    form_cluster(nodes.nodes, replicas=1)
    return nodes
