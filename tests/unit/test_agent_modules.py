# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module_utils files the agent role ships are exactly what the agent program imports, transitively."""

from __future__ import annotations

import ast
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(ROOT, "plugins", "module_utils")
ROLE = os.path.join(ROOT, "roles", "redis_cluster_agent")
AGENT_PACKAGE = "redisops_cluster"


def imported_modules(path: str) -> set:
    """Names of the module_utils files a file imports: relative imports, or the agent's package."""
    with open(path) as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1 and node.module:
            names.add(node.module)
        elif node.module and node.module.startswith(AGENT_PACKAGE + "."):
            names.add(node.module.split(".", 1)[1])
    return names


def closure(start: set) -> set:
    found, pending = set(), list(start)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(imported_modules(os.path.join(MODULE_UTILS, name + ".py")))
    return found


def test_shipped_modules_are_the_agents_imports():
    with open(os.path.join(ROLE, "vars", "main.yml")) as handle:
        shipped = set(yaml.safe_load(handle)["redis_cluster_agent_shared_modules"])
    needed = closure(imported_modules(os.path.join(ROLE, "files", "redis_cluster_agent.py")))
    assert {"_client", "_topology", "_facts"} <= needed
    assert shipped == needed


def test_shipped_modules_import_nothing_from_ansible():
    with open(os.path.join(ROLE, "vars", "main.yml")) as handle:
        shipped = yaml.safe_load(handle)["redis_cluster_agent_shared_modules"]
    for name in shipped:
        with open(os.path.join(MODULE_UTILS, name + ".py")) as handle:
            tree = ast.parse(handle.read())
        imports = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imports += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        assert not [module for module in imports if module.startswith("ansible")], name
