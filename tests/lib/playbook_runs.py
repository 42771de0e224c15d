# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the collection's modules through ansible-playbook, the way users do, and hand back each task's result."""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS = tempfile.mkdtemp(prefix="redisops-collections-")
os.makedirs(os.path.join(_COLLECTIONS, "ansible_collections", "redisops"))
os.symlink(ROOT, os.path.join(_COLLECTIONS, "ansible_collections", "redisops", "cluster"))
atexit.register(shutil.rmtree, _COLLECTIONS, True)
COLLECTIONS_PATH = _COLLECTIONS
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclasses.dataclass
class PlaybookRun:
    rc: int
    output: str
    results: list

    @property
    def result(self) -> dict:
        return self.results[0]


def ansible_env(extra=None) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    })
    env.update(extra or {})
    return env


def play_recap(output: str) -> dict:
    """host -> {"ok": n, "changed": n, "unreachable": n, "failed": n}, from ansible-playbook's play recap."""
    return {match.group(1): dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()[1:])))
            for match in _RECAP.finditer(output)}


@dataclasses.dataclass
class InventoryRun:
    rc: int
    output: str
    # host -> {"ok": n, "changed": n, "unreachable": n, "failed": n}, from the play recap
    recap: dict


def run_playbook(playbook: str, inventory: str, extra_vars=None, env=None, timeout: float = 1200) -> InventoryRun:
    """ansible-playbook over an inventory of remote hosts (their own Python, their own connection)."""
    args = [ANSIBLE_PLAYBOOK, "-i", inventory, playbook]
    if extra_vars:
        args += ["--extra-vars", json.dumps(extra_vars)]
    proc = subprocess.run(args, env=ansible_env(dict({"ANSIBLE_PIPELINING": "1"}, **(env or {}))),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    return InventoryRun(rc=proc.returncode, output=proc.stdout, recap=play_recap(proc.stdout))


def run_tasks(tasks, check: bool = False, diff: bool = False, env=None, verbosity: int = 0,
              module_defaults=None) -> PlaybookRun:
    """Run the tasks (each {module: args} or a full task dict) on localhost; every task's result is returned."""
    workdir = tempfile.mkdtemp(prefix="redisops-play-")
    try:
        out_file = os.path.join(workdir, "results.json")
        play_tasks = []
        for index, task in enumerate(tasks):
            task = dict(task)
            task.setdefault("name", "task %d" % index)
            task["register"] = "result_%d" % index
            task["ignore_errors"] = True
            play_tasks.append(task)
        collected = "[" + ", ".join("result_%d" % index for index in range(len(tasks))) + "]"
        play_tasks.append({"name": "collect results", "ansible.builtin.copy": {
            "content": "{{ %s | to_json }}" % collected, "dest": out_file, "mode": "0600"}, "check_mode": False})
        play = {"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}
        if module_defaults:
            play["module_defaults"] = module_defaults
        playbook = os.path.join(workdir, "play.yml")
        with open(playbook, "w") as handle:
            json.dump([play], handle)
        args = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", playbook]
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")
        if verbosity:
            args.append("-" + "v" * verbosity)
        proc = subprocess.run(args, env=ansible_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=600, check=False)
        if not os.path.exists(out_file):
            raise AssertionError("ansible-playbook did not finish (rc %d):\n%s" % (proc.returncode, proc.stdout))
        with open(out_file) as handle:
            results = json.load(handle)
        return PlaybookRun(rc=proc.returncode, output=proc.stdout, results=results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_module(module: str, args: dict, **kwargs) -> dict:
    """One task of redisops.cluster.<module>; its result."""
    return run_tasks([{"redisops.cluster." + module: args}], **kwargs).result


def start_module(module: str, args: dict, workdir: str) -> subprocess.Popen:
    """One task of redisops.cluster.<module> through ansible-playbook in the background, in its own session (so
    that it can be waited for or killed as a group); its output on the process's stdout."""
    playbook = os.path.join(workdir, "play-%s.yml" % module)
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": [{"redisops.cluster." + module: args}]}],
                  handle)
    return subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", playbook], env=ansible_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def local_inventory(groups: dict, **all_vars) -> dict:
    """An inventory whose hosts all run on this machine: {group: {host: {variables}}} -> the YAML inventory form,
    every host reached by the local connection with this Python; all_vars apply to every host."""
    base = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"vars": dict(base, **all_vars),
                    "children": {group: {"hosts": hosts} for group, hosts in groups.items()}}}


def nodes_inventory(nodes, zones=("a", "b", "c"), group: str = "redis_cluster", **all_vars) -> dict:
    """Test nodes spread over len(zones) inventory hosts, one per zone (node i on host i mod len(zones))."""
    hosts = {}
    for index, node in enumerate(nodes):
        zone = zones[index % len(zones)]
        host = hosts.setdefault("host-" + zone, {
            "redis_cluster_address": node.host, "redis_cluster_zone": zone, "redis_node_ports": []})
        host["redis_node_ports"].append(node.port)
    return local_inventory({group: hosts}, **all_vars)


def reconcile_decisions(output: str) -> list:
    """The lines the reconcile playbook printed under Show the decisions."""
    block = output.split("TASK [Show the decisions]", 1)[1].split("TASK [", 1)[0]
    return [json.loads(line.strip().rstrip(",")) for line in block.splitlines() if line.strip().startswith('"')
            and not line.strip().startswith('"msg"')]


def collection_playbook_command(name: str, inventory: dict, workdir: str, extra_vars=None, check: bool = False,
                                verbosity: int = 0, limit: str | None = None) -> list:
    """The ansible-playbook command line of redisops.cluster.<name> over inventory (a dict, see local_inventory),
    which it writes into workdir; limit is --limit's pattern."""
    path = os.path.join(workdir, "inventory.json")
    with open(path, "w") as handle:
        json.dump(inventory, handle)
    args = [ANSIBLE_PLAYBOOK, "-i", path, "redisops.cluster." + name]
    if extra_vars:
        args += ["--extra-vars", json.dumps(extra_vars)]
    if check:
        args.append("--check")
    if limit:
        args += ["--limit", limit]
    if verbosity:
        args.append("-" + "v" * verbosity)
    return args


def run_collection_playbook(name: str, inventory: dict, extra_vars=None, check: bool = False, env=None,
                            verbosity: int = 0, timeout: float = 900, limit: str | None = None) -> InventoryRun:
    """ansible-playbook redisops.cluster.<name>, as users run the collection's playbooks, over an inventory given
    as a dict (see local_inventory); limit is --limit's pattern."""
    workdir = tempfile.mkdtemp(prefix="redisops-inventory-")
    try:
        args = collection_playbook_command(name, inventory, workdir, extra_vars, check, verbosity, limit)
        proc = subprocess.run(args, env=ansible_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return InventoryRun(rc=proc.returncode, output=proc.stdout, recap=play_recap(proc.stdout))


def start_collection_playbook(name: str, inventory: dict, workdir: str, extra_vars=None,
                              env=None) -> subprocess.Popen:
    """redisops.cluster.<name> as run_collection_playbook runs it, but in the background and in its own session
    like start_module; its inventory goes into workdir, which must outlive the run."""
    return subprocess.Popen(collection_playbook_command(name, inventory, workdir, extra_vars), env=ansible_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run_roles(roles, variables: dict, check: bool = False, timeout: float = 300) -> InventoryRun:
    """A play on localhost that applies the collection's roles (names without the collection prefix) with
    variables given as extra variables, as a user's play would; its rc, output and recap."""
    workdir = tempfile.mkdtemp(prefix="redisops-roles-")
    try:
        playbook, extra = os.path.join(workdir, "play.yml"), os.path.join(workdir, "vars.json")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False,
                        "roles": ["redisops.cluster." + role for role in roles]}], handle)
        with open(extra, "w") as handle:
            json.dump(variables, handle)
        args = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", playbook, "-e", "@" + extra]
        if check:
            args.append("--check")
        proc = subprocess.run(args, env=ansible_env({"ANSIBLE_PIPELINING": "1"}), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return InventoryRun(rc=proc.returncode, output=proc.stdout, recap=play_recap(proc.stdout))
