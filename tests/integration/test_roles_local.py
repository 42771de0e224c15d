# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles redis_node and redis_cluster_agent applied by ansible-playbook to this host, with plain processes
(redis_node_supervisor: none), TLS and a password, and every directory in a temporary one; the tests run in file
order on one deployment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import redis
from playbook_runs import ANSIBLE_PLAYBOOK, ansible_env
from redis_harness import REDIS_CLI, TlsFiles
from role_hosts import BUS_OFFSET, free_instance_ports, kill_process, wait_gone

PASSWORD = 'role "test" pässword'
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


class Deployment:
    """The roles applied to this host in a temporary directory; apply() runs the play with extra variables."""

    def __init__(self, root: str, ports: list):
        self.root = root
        self.ports = ports
        self.facts_dir = os.path.join(root, "facts.d")
        self.agent_lib = os.path.join(root, "agent")
        self.agent_conf = os.path.join(root, "agent-conf")
        self.run_dir = os.path.join(root, "run")
        self.tls = TlsFiles(os.path.join(root, "tls-src"))
        self.variables = {
            "redis_node_supervisor": "none",
            "redis_node_manage_package": False,
            "redis_node_ports": ports,
            "redis_node_bind": "127.0.0.1",
            "redis_node_password": PASSWORD,
            "redis_node_cluster_node_timeout": 2000,
            "redis_node_bus_port_offset": BUS_OFFSET,
            "redis_node_data_dir": os.path.join(root, "data"),
            "redis_node_conf_dir": os.path.join(root, "conf"),
            "redis_node_log_dir": os.path.join(root, "log"),
            "redis_node_run_dir": self.run_dir,
            "redis_node_tls": True,
            "redis_node_tls_cert_src": self.tls.cert,
            "redis_node_tls_key_src": self.tls.key,
            "redis_node_tls_ca_src": self.tls.ca,
            "redis_cluster_agent_manage_packages": False,
            "redis_cluster_agent_python": sys.executable,
            "redis_cluster_agent_lib_dir": self.agent_lib,
            "redis_cluster_agent_conf_dir": self.agent_conf,
            "redis_cluster_agent_facts_dir": self.facts_dir,
        }
        self.playbook = os.path.join(root, "play.yml")
        with open(self.playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False,
                        "roles": ["redisops.cluster.redis_node", "redisops.cluster.redis_cluster_agent"]}], handle)

    def run(self, **changes) -> subprocess.CompletedProcess:
        """Run the play with these changes to the variables, whatever its outcome."""
        self.variables.update(changes)
        extra = os.path.join(self.root, "vars.json")
        with open(extra, "w") as handle:
            json.dump(self.variables, handle)
        return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", self.playbook, "-e", "@" + extra],
                              env=ansible_env({"ANSIBLE_PIPELINING": "1"}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300, check=False)

    def apply(self, **changes) -> tuple:
        """Run the play; (changed tasks, output). Fails the test on any failed task."""
        proc = self.run(**changes)
        recap = RECAP.search(proc.stdout)
        assert proc.returncode == 0 and recap and recap.group(4) == "0", proc.stdout
        assert PASSWORD not in proc.stdout
        return int(recap.group(2)), proc.stdout

    def client(self, port: int, password: str = PASSWORD) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5,
                           **self.tls.client_kwargs())

    def run_agent(self, settings_file: str | None = None) -> None:
        program = os.path.join(self.agent_lib, "redis_cluster_agent.py")
        subprocess.run([sys.executable, "-I", program, settings_file or os.path.join(self.agent_conf, "agent.json")],
                       check=True, timeout=60, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Every instance the roles started, by its pid file."""
        pids = []
        for port in self.ports:
            try:
                with open(os.path.join(self.run_dir, "redis-%d.pid" % port)) as handle:
                    pids.append(int(handle.read()))
            except (OSError, ValueError):
                continue
        for pid in pids:
            kill_process(pid, signal.SIGKILL)
        wait_gone(pids)


def wait_cluster_ok(deployment: Deployment, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [deployment.client(port).execute_command("CLUSTER", "INFO") for port in deployment.ports]
        if all(b"cluster_state:ok" in state for state in states):
            return
        assert time.monotonic() < deadline, "the instances did not reach cluster_state:ok"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def deployment():
    root = tempfile.mkdtemp(prefix="redisops-roles-")
    deployed = Deployment(root, free_instance_ports(3))
    try:
        yield deployed
    finally:
        deployed.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("bind", ["127.0.0.1 192.0.2.10", "0.0.0.0"])
def test_protected_mode_without_a_password_on_a_public_address_is_refused_before_any_change(bind):
    root = tempfile.mkdtemp(prefix="redisops-roles-")
    try:
        refused = Deployment(root, free_instance_ports(1))
        proc = refused.run(redis_node_password="", redis_node_bind=bind)
        recap = RECAP.search(proc.stdout)
        assert proc.returncode != 0 and recap and recap.group(4) == "1", proc.stdout
        assert "redis_node_password" in proc.stdout and "redis_node_protected_mode" in proc.stdout, proc.stdout
        assert not os.path.exists(refused.variables["redis_node_conf_dir"])
        assert not os.path.exists(refused.variables["redis_node_data_dir"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_ids(deployment: Deployment) -> dict:
    return {port: deployment.client(port).info("server")["run_id"] for port in deployment.ports}


def test_first_run_starts_every_instance_and_they_form_a_cluster(deployment):
    changed, _output = deployment.apply()
    assert changed > 0
    for port in deployment.ports:
        conn = deployment.client(port)
        assert conn.ping()
        assert conn.config_get("cluster-node-timeout") == {"cluster-node-timeout": "2000"}
        myself = next(line for line in conn.execute_command("CLUSTER", "NODES").decode().splitlines() if "myself" in line)
        assert ":%d@%d " % (port, port + BUS_OFFSET) in myself
        assert conn.config_get("dbfilename") == {"dbfilename": "dump-%d.rdb" % port}
        assert conn.config_get("protected-mode") == {"protected-mode": "yes"}
    with pytest.raises(redis.AuthenticationError):
        deployment.client(deployment.ports[0], password="wrong").ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=deployment.ports[0], password=PASSWORD, socket_timeout=5).ping()
    subprocess.run([REDIS_CLI] + deployment.tls.cli_args() + ["--cluster", "create"]
                   + ["127.0.0.1:%d" % port for port in deployment.ports]
                   + ["--cluster-replicas", "0", "--cluster-yes"], env=dict(os.environ, REDISCLI_AUTH=PASSWORD),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    wait_cluster_ok(deployment)


def test_second_run_changes_nothing_after_redis_rewrites_its_files(deployment):
    # Redis rewrites nodes-<port>.conf as the cluster forms and its own redis.conf on CONFIG REWRITE.
    conn = deployment.client(deployment.ports[0])
    conn.config_set("slowlog-max-len", 256)
    conn.execute_command("CONFIG", "REWRITE")
    before = run_ids(deployment)
    changed, output = deployment.apply()
    assert changed == 0, output
    assert run_ids(deployment) == before


def test_a_changed_setting_restarts_only_its_instance(deployment):
    target = deployment.ports[1]
    before = run_ids(deployment)
    changed, output = deployment.apply(redis_node_instance_config={target: {"maxmemory": "64mb"}})
    after = run_ids(deployment)
    assert changed > 0
    assert [port for port in deployment.ports if after[port] != before[port]] == [target], output
    assert deployment.client(target).config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    # The role waited for the restarted master to see its cluster ok before it finished.
    assert b"cluster_state:ok" in deployment.client(target).execute_command("CLUSTER", "INFO")
    # What CONFIG REWRITE saved on another instance survived; the role's settings won on the restarted one.
    assert deployment.client(deployment.ports[0]).config_get("slowlog-max-len") == {"slowlog-max-len": "256"}


def test_restart_changed_false_writes_settings_and_restarts_nothing(deployment):
    target = deployment.ports[2]
    before = run_ids(deployment)
    changed, output = deployment.apply(redis_node_instance_config={target: {"maxmemory": "32mb"}},
                                       redis_node_restart_changed=False)
    assert changed > 0
    assert run_ids(deployment) == before, output
    with open(os.path.join(deployment.variables["redis_node_conf_dir"], "%d.conf" % target)) as handle:
        assert re.search(r"(?m)^maxmemory 32mb$", handle.read())
    # The instance still runs with what it started with: the restart is left to a rolling restart.
    assert deployment.client(target).config_get("maxmemory") == {"maxmemory": "0"}


def test_an_instance_left_out_of_the_ports_is_named_and_keeps_running(deployment):
    listed, left_out = deployment.ports[:2], deployment.ports[2]
    before = run_ids(deployment)
    _changed, output = deployment.apply(redis_node_ports=listed)
    assert "Instances on port(s) %d run on this host but are not in redis_node_ports" % left_out in output, output
    assert run_ids(deployment) == before
    _changed, output = deployment.apply(redis_node_ports=deployment.ports)
    assert "Instances on port(s)" not in output, output


def facts_file(deployment: Deployment) -> str:
    return os.path.join(deployment.facts_dir, "redis_cluster.fact")


def test_agent_writes_every_instance_as_a_json_fact(deployment):
    deployment.run_agent()
    path = facts_file(deployment)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(deployment.facts_dir) == ["redis_cluster.fact"]
    with open(path) as handle:
        text = handle.read()
    assert PASSWORD not in text and json.dumps(PASSWORD)[1:-1] not in text
    facts = json.loads(text)
    assert facts["schema"] == 1 and facts["interval"] == 30 and facts["host"] == socket.gethostname()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", facts["collected_at"])
    assert sorted(facts["instances"]) == sorted(str(port) for port in deployment.ports)
    ids = {port: deployment.client(port).execute_command("CLUSTER", "MYID").decode() for port in deployment.ports}
    served = 0
    for port in deployment.ports:
        entry = facts["instances"][str(port)]
        assert entry["error"] is None and entry["collected_at"] == facts["collected_at"]
        assert entry["node"]["id"] == ids[port] and entry["node"]["port"] == port
        assert entry["node"]["role"] == "master" and entry["node"]["reachable"] is True
        cluster = entry["cluster"]
        assert cluster["state"] == "ok" and cluster["known_nodes"] == 3 and cluster["slots_ok"] == 16384
        assert cluster["failing_nodes"] == [] and cluster["open_slots"] == []
        served += entry["node"]["slot_count"]
    assert served == 16384
    assert len({facts["instances"][str(port)]["cluster"]["view_id"] for port in deployment.ports}) == 1


def test_agent_keeps_the_last_good_data_beside_an_error(deployment):
    with open(facts_file(deployment)) as handle:
        good = json.load(handle)
    with open(os.path.join(deployment.agent_conf, "agent.json")) as handle:
        settings = json.load(handle)
    wrong_password = os.path.join(deployment.root, "wrong-password")
    with open(wrong_password, "w") as handle:
        handle.write("not the password\n")
    settings["password_file"] = wrong_password
    wrong_settings = os.path.join(deployment.root, "wrong-agent.json")
    with open(wrong_settings, "w") as handle:
        json.dump(settings, handle)
    time.sleep(1.1)  # a new collected_at
    deployment.run_agent(wrong_settings)
    with open(facts_file(deployment)) as handle:
        text = handle.read()
    facts = json.loads(text)
    assert "not the password" not in text
    assert facts["collected_at"] > good["collected_at"]
    for port in deployment.ports:
        entry, before = facts["instances"][str(port)], good["instances"][str(port)]
        assert "WRONGPASS" in entry["error"] or "invalid username-password" in entry["error"], entry["error"]
        assert entry["error_at"] == facts["collected_at"]
        assert entry["collected_at"] == before["collected_at"]
        assert entry["node"] == before["node"] and entry["cluster"] == before["cluster"]


def test_setup_reads_the_fact(deployment):
    deployment.run_agent()
    ansible = os.path.join(os.path.dirname(ANSIBLE_PLAYBOOK), "ansible")
    proc = subprocess.run(
        [ansible, "localhost", "-i", "localhost,", "-c", "local", "--one-line", "-m", "setup",
         "-a", "filter=ansible_local fact_path=%s" % deployment.facts_dir],
        env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, check=True)
    # localhost | SUCCESS => {...}
    result = json.loads(proc.stdout.partition("=>")[2])
    local = result["ansible_facts"]["ansible_local"]["redis_cluster"]
    assert sorted(local["instances"]) == sorted(str(port) for port in deployment.ports)
    assert all(entry["cluster"]["state"] == "ok" for entry in local["instances"].values())
