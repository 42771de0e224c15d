# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX project in examples/awx_project and the collection's execution environment dependencies, checked with the
tools AWX users run: ansible-builder and ansible-playbook --syntax-check."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import yaml
from playbook_runs import ANSIBLE_PLAYBOOK, COLLECTIONS_PATH, ROOT, ansible_env

PROJECT = os.path.join(ROOT, "examples", "awx_project")
BUILDER = os.path.join(os.path.dirname(sys.executable), "ansible-builder")


def project_playbooks() -> dict:
    """Thin playbook path -> the collection playbook it imports."""
    imports = {}
    for path in sorted(glob.glob(os.path.join(PROJECT, "*.yml"))):
        with open(path) as handle:
            plays = yaml.safe_load(handle)
        if isinstance(plays, list):
            imports[path] = [play["ansible.builtin.import_playbook"] for play in plays]
    return {path: names[0] for path, names in imports.items() if len(names) == 1}


def test_introspection_lists_the_python_client_and_no_system_package():
    completed = subprocess.run([BUILDER, "introspect", "--sanitize", COLLECTIONS_PATH], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, check=True, timeout=120)
    found = yaml.safe_load(completed.stdout.split("\n", 1)[1])
    ours = [line for line in found.get("python", []) if "redisops.cluster" in line]
    assert [re.split(r"[<>=\s]", line)[0] for line in ours] == ["redis", "hiredis"], completed.stdout
    assert not [line for line in found.get("system", []) if "redisops.cluster" in line], completed.stdout


def test_the_execution_environment_definition_builds_a_context():
    with tempfile.TemporaryDirectory() as context:
        subprocess.run([BUILDER, "create", "-f", os.path.join(PROJECT, "execution-environment.yml"),
                        "--context", context], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
        with open(os.path.join(context, "_build", "requirements.yml")) as handle:
            requirements = yaml.safe_load(handle)
    assert [entry["name"] for entry in requirements["collections"]] == ["redisops.cluster"]


def test_every_collection_playbook_has_a_project_playbook():
    collection = {os.path.basename(path)[:-4] for path in glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))}
    imported = {name.split(".")[-1] for name in project_playbooks().values()}
    assert collection and imported == collection
    for path, name in project_playbooks().items():
        assert os.path.basename(path)[:-4] == name.split(".")[-1]


@pytest.mark.parametrize("path", sorted(project_playbooks()), ids=os.path.basename)
def test_project_playbook_passes_the_syntax_check(path):
    completed = subprocess.run([ANSIBLE_PLAYBOOK, "--syntax-check", "-i", os.path.join(PROJECT, "inventory"), path],
                               env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout


def test_survey_variables_are_documented_by_their_playbook():
    surveys = sorted(glob.glob(os.path.join(PROJECT, "surveys", "*.json")))
    assert surveys
    for path in surveys:
        with open(path) as handle:
            survey = json.load(handle)
        name = os.path.basename(path)[:-5]
        with open(os.path.join(ROOT, "playbooks", name + ".yml")) as handle:
            header = "".join(line for line in handle if line.startswith("#"))
        assert survey["name"] and survey["spec"], path
        for question in survey["spec"]:
            assert question["type"] in ("text", "textarea", "integer", "float", "multiplechoice", "multiselect",
                                        "password")
            assert re.search(r"\b%s\b" % question["variable"], header), (path, question["variable"])
            if question["type"] in ("multiplechoice", "multiselect"):
                assert question["default"] in question["choices"].split("\n") + [""], (path, question)


def test_the_credential_type_keeps_the_password_secret_and_feeds_the_modules_fallbacks():
    with open(os.path.join(PROJECT, "credential_types", "redis_cluster.yml")) as handle:
        credential = yaml.safe_load(handle)
    fields = {field["id"]: field for field in credential["inputs"]["fields"]}
    assert fields["password"]["secret"] is True
    assert credential["injectors"]["env"]["REDIS_CLUSTER_PASSWORD"] == "{{ password }}"
    assert credential["injectors"]["env"]["REDIS_CLUSTER_USER"] == "{{ username }}"
