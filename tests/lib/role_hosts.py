# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inventory hosts on this machine that the roles deploy (redis_node_supervisor none): each host its own loopback
address, zone and directories under one temporary root, so that placement and the playbooks see distinct hosts."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import redis
from netns_hosts import NetnsHost
from playbook_runs import local_inventory
from redis_harness import RedisNode, TlsFiles, port_free

BUS_OFFSET = 1000  # not the default, so that the roles set cluster-port; ports below the ephemeral range


def free_instance_ports(count: int, address: str = "127.0.0.1", bus_offset: int = BUS_OFFSET) -> list:
    """Ports below the ephemeral range, free with their bus port (port + bus_offset) on address and on the
    wildcard address."""
    ports = []
    candidate = random.randrange(20000, 29000)
    while len(ports) < count:
        if all(port_free(port, host) for host in (address, "0.0.0.0") for port in (candidate, candidate + bus_offset)):
            ports.append(candidate)
        candidate += 1
    return ports


class PidProcess:
    """The process a pid file names, with the one question the harness asks of a process (poll); the file is read at
    each question, so that it follows a restart."""

    def __init__(self, pid_file: str):
        self.pid_file = pid_file

    @property
    def pid(self) -> int | None:
        try:
            with open(self.pid_file) as handle:
                return int(handle.read())
        except (OSError, ValueError):
            return None

    def poll(self):
        """None while the process runs; a zombie (exited, its parent not yet told) has ended too."""
        pid = self.pid
        if not pid:
            return -1
        try:
            with open("/proc/%d/stat" % pid) as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return -1
        return -1 if state in ("Z", "X") else None


class DeployedNode(RedisNode):
    """An instance the roles started as a plain process: reached and read like a harness node, never stopped by it."""

    def __init__(self, port: int, run_dir: str, host: str = "127.0.0.1",  # pylint: disable=super-init-not-called
                 password: str | None = None, tls: TlsFiles | None = None):
        self.host, self.port, self.bus_port, self.password, self.tls = host, port, port + BUS_OFFSET, password, tls
        self.dir = run_dir
        self.process = PidProcess(os.path.join(run_dir, "redis-%d.pid" % port))


@dataclasses.dataclass
class RoleHost:
    name: str
    address: str
    ports: list
    zone: str
    root: str
    variables: dict = dataclasses.field(default_factory=dict)  # more host variables, e.g. redis_cluster_role

    @property
    def run_dir(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def facts_dir(self) -> str:
        return os.path.join(self.root, "facts.d")

    @property
    def addresses(self) -> list:
        return ["%s:%d" % (self.address, port) for port in self.ports]

    def host_vars(self) -> dict:
        return dict({
            "redis_cluster_zone": self.zone,
            "redis_node_bind": self.address,
            # Loopback connections leave from 127.0.0.1 whatever the bound address: without announcing it, the other
            # nodes would learn this node's address from its bus connections as 127.0.0.1.
            "redis_node_announce_ip": self.address,
            "redis_node_ports": self.ports,
            "redis_node_data_dir": os.path.join(self.root, "data"),
            "redis_node_conf_dir": os.path.join(self.root, "conf"),
            "redis_node_log_dir": os.path.join(self.root, "log"),
            "redis_node_run_dir": self.run_dir,
            "redis_cluster_agent_lib_dir": os.path.join(self.root, "agent"),
            "redis_cluster_agent_conf_dir": os.path.join(self.root, "agent-conf"),
            "redis_cluster_agent_facts_dir": self.facts_dir,
        }, **self.variables)

    def process(self, port: int) -> PidProcess:
        """The process of the instance on port, by the pid file the role gives it."""
        return PidProcess(os.path.join(self.run_dir, "redis-%d.pid" % port))

    def pid(self, port: int) -> int | None:
        return self.process(port).pid


class RoleHosts:
    """Hosts named host-1, host-2, ... at 127.0.0.2, 127.0.0.3, ...; a context manager that kills every instance the
    roles started and removes the root on exit. Add hosts with add(); inventory() lists them by group."""

    def __init__(self, password: str | None = None, node_timeout: int = 2000, **group_vars):
        self.root = tempfile.mkdtemp(prefix="redisops-hosts-")
        self.password = password
        self.hosts: dict = {}
        self.groups: dict = {}
        self.group_vars = dict({
            "redis_node_supervisor": "none",
            "redis_node_manage_package": False,
            "redis_node_cluster_node_timeout": node_timeout,
            "redis_node_bus_port_offset": BUS_OFFSET,
            "redis_node_appendonly": True,
            "redis_cluster_agent_manage_packages": False,
            "redis_cluster_agent_python": sys.executable,
        }, **group_vars)
        if password:
            self.group_vars["redis_node_password"] = password

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def add(self, group: str, zone: str, ports: int, namespace: NetnsHost | None = None, **variables) -> RoleHost:
        """A host at the next loopback address, or the host of a network namespace (tests/lib/netns_hosts): its
        address, its name, and a Python interpreter that runs the modules inside it, so that what the roles start
        runs there too."""
        index = len(self.hosts) + 1
        if namespace:
            # Nothing else listens in the namespace: the first ports are free.
            name, address, chosen = namespace.name, namespace.address, [7000 + offset for offset in range(ports)]
        else:
            name, address = "host-%d" % index, "127.0.0.%d" % (index + 1)
            chosen = free_instance_ports(ports, address)
        host = RoleHost(name, address, chosen, zone, os.path.join(self.root, name), variables)
        os.makedirs(host.root)
        if namespace:
            host.variables["ansible_python_interpreter"] = _interpreter_inside(namespace, host.root)
        self.hosts[host.name] = host
        self.groups.setdefault(group, []).append(host.name)
        return host

    def move(self, name: str, group: str) -> None:
        """Put a host into another group (scale-out done: the new hosts join the cluster's group)."""
        for members in self.groups.values():
            if name in members:
                members.remove(name)
        self.groups.setdefault(group, []).append(name)

    def inventory(self) -> dict:
        return local_inventory({group: {name: self.hosts[name].host_vars() for name in names}
                                for group, names in self.groups.items()}, **self.group_vars)

    def client(self, address: str) -> redis.Redis:
        host, port = address.rsplit(":", 1)
        return redis.Redis(host=host, port=int(port), password=self.password, socket_timeout=5)

    def nodes(self, names, password: str | None = None, tls: TlsFiles | None = None) -> list:
        """The instances of the hosts named, as harness nodes reached with password and tls."""
        return [DeployedNode(port, self.hosts[name].run_dir, self.hosts[name].address, password, tls)
                for name in names for port in self.hosts[name].ports]

    def host_of(self, address: str) -> RoleHost:
        return next(host for host in self.hosts.values() if address in host.addresses)

    def kill(self, address: str, signum: int = signal.SIGKILL) -> None:
        """Kill the instance at address (its pid file stays, as after a crash)."""
        host = self.host_of(address)
        pid = host.pid(int(address.rsplit(":", 1)[1]))
        if pid:
            kill_process(pid, signum)
            wait_gone([pid])

    def close(self) -> None:
        pids = [pid for host in self.hosts.values() for pid in map(host.pid, host.ports) if pid]
        for pid in pids:
            kill_process(pid, signal.SIGKILL)
        wait_gone(pids)
        shutil.rmtree(self.root, ignore_errors=True)


def _interpreter_inside(namespace: NetnsHost, directory: str) -> str:
    """A script that runs this Python inside namespace, for ansible_python_interpreter."""
    path = os.path.join(directory, "python")
    with open(path, "w") as handle:
        command = " ".join(shlex.quote(part) for part in namespace.command_prefix + [sys.executable])
        handle.write("#!/bin/sh\nexec %s \"$@\"\n" % command)
    os.chmod(path, 0o755)
    return path


class RoleInstance(RedisNode):
    """An instance the roles started, with the checks of a harness node (clients, ROLE, CLUSTER NODES) and its faults
    (kill and restart, pause and resume); its process is the one its pid file names."""

    def __init__(self, host: RoleHost, port: int, password: str | None = None):  # pylint: disable=super-init-not-called
        self.host, self.port, self.bus_port = host.address, port, port + BUS_OFFSET
        self.dir, self.password, self.tls = host.root, password, None
        self.role_host = host
        self.process = host.process(port)
        self.start_command = None

    @property
    def log_file(self) -> str:
        return os.path.join(self.role_host.host_vars()["redis_node_log_dir"], "redis-%d.log" % self.port)

    def command(self) -> list:
        """The command line the role starts the instance with (roles/redis_node/tasks/restart.yml): the server
        binary and Redis' own file as the running instance reports them, then the role's file of the port. Not
        /proc/<pid>/cmdline: Redis writes its process title over it."""
        info = self.client().info("server")
        return [info["executable"], info["config_file"], "--include",
                os.path.join(self.role_host.host_vars()["redis_node_conf_dir"], "%d.conf" % self.port)]

    def kill(self) -> None:
        """SIGKILL, as a crash (the pid file stays); the command line is read first, for restart."""
        pid = self.process.pid
        if self.process.poll() is None:
            self.start_command = self.command()
            kill_process(pid, signal.SIGKILL)
            wait_gone([pid])

    def pause(self) -> None:
        kill_process(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        kill_process(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """The same instance again (it daemonizes), on its own files: it reloads its AOF and nodes file."""
        self.kill()
        subprocess.run(self.start_command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                       timeout=30)
        # The server's parent returns once it has forked; the pid file names the new process a moment later.
        deadline = time.monotonic() + 10
        while self.process.poll() is not None:
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start again; see %s" % (self.address, self.log_file))
            time.sleep(0.02)
        self.wait_ready()


def kill_process(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def wait_gone(pids, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        time.sleep(0.05)


def age_facts(path: str, seconds: float) -> str:
    """Make the agent's facts file at path look collected seconds ago; the collected_at it now holds."""
    with open(path) as handle:
        facts = json.load(handle)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    facts["collected_at"] = old.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "w") as handle:
        json.dump(facts, handle)
    return facts["collected_at"]
