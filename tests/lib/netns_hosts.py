# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test hosts in network namespaces this test run makes, joined by a bridge in a switch namespace it makes too.

Each host is one namespace with loopback up and one veth to the switch, addressed from its own /24 of
198.18.0.0/15 (RFC 2544's range for network tests), so placement sees distinct hosts. The caller's namespace
reaches the switch through one veth whose end here carries only a 198.18.x address and its /24's route: the tests'
own redis-py clients run in the test process, and the modules the tests run through ansible-playbook talk to the
nodes from it too, while no packet for these addresses leaves through any other interface. Cutting a host sets its
switch port down (both directions at once, as a pulled cable); healing sets it up again.

Names carry the process id and a random part, so runs in parallel never share a namespace, an interface or a subnet.
Everything is removed on exit (context manager, plus an atexit safety net), with any process still left inside.

Run as a script inside a host (``ip netns exec NS python netns_hosts.py write HOST PORT PREFIX``), it is a client on
that host: a cluster_checks.Writer that writes until its standard input closes, then prints what it recorded as JSON
(the password, if any, in the environment variable REDIS_PASSWORD).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import types

from cluster_checks import ProcessWriter, Writer

IP = shutil.which("ip") or "/usr/sbin/ip"
_LIVE = set()


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists(IP):
        return "ip (iproute2) is not installed"
    return None


def _ip(*args: str) -> str:
    return subprocess.run([IP] + list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True).stdout


def _free_subnet() -> str:
    """A /24 of 198.18.0.0/15 that no address or route of this namespace uses yet, as its first three octets."""
    used = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show")
    candidates = ["198.%d.%d" % (18 + index // 256, index % 256) for index in range(512)]
    random.shuffle(candidates)
    return next(prefix for prefix in candidates if prefix + "." not in used)


@dataclasses.dataclass
class NetnsHost:
    name: str
    zone: str
    namespace: str
    address: str
    port_name: str  # its veth's end in the switch namespace

    @property
    def command_prefix(self) -> list:
        """Prepended to a command, runs it inside this host."""
        return [IP, "netns", "exec", self.namespace]


class NetnsHosts:
    """One namespace per zone (host-a at .11, host-b at .12, ...) on a bridge in a switch namespace; a context
    manager that removes them all."""

    def __init__(self, zones=("a", "b", "c")):
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.tag = "%05x%03x" % (os.getpid() & 0xFFFFF, random.randrange(0x1000))
        self.switch = "rops-%s-sw" % self.tag
        self.uplink = "rops%s" % self.tag  # the caller's end, 12 characters (interface names stop at 15)
        self.namespaces = []
        self.hosts = {}
        _LIVE.add(self)
        try:
            self.subnet = _free_subnet()
            self.controller_address = self.subnet + ".1"
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            _ip("link", "add", self.uplink, "type", "veth", "peer", "name", "uplink", "netns", self.switch)
            _ip("-n", self.switch, "link", "set", "uplink", "master", "br0", "up")
            _ip("addr", "add", self.controller_address + "/24", "dev", self.uplink)
            _ip("link", "set", self.uplink, "up")
            for index, zone in enumerate(zones):
                self._add_host(zone, "%s.%d" % (self.subnet, 11 + index))
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _add_host(self, zone: str, address: str) -> None:
        host = NetnsHost("host-" + zone, zone, "rops-%s-%s" % (self.tag, zone), address, "to-" + zone)
        self._add_namespace(host.namespace)
        _ip("-n", self.switch, "link", "add", host.port_name, "type", "veth", "peer", "name", "eth0",
            "netns", host.namespace)
        _ip("-n", self.switch, "link", "set", host.port_name, "master", "br0", "up")
        _ip("-n", host.namespace, "addr", "add", address + "/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[host.name] = host

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def __iter__(self):
        return iter(self.hosts.values())

    def cut(self, host: NetnsHost) -> None:
        """Cut the host off: its switch port goes down, nothing passes either way."""
        _ip("-n", self.switch, "link", "set", host.port_name, "down")

    def heal(self, host: NetnsHost) -> None:
        _ip("-n", self.switch, "link", "set", host.port_name, "up")

    def close(self) -> None:
        """Kill what still runs in the namespaces made here, then delete them (the veths go with them)."""
        for namespace in reversed(self.namespaces):
            pids = subprocess.run([IP, "netns", "pids", namespace], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run([IP, "netns", "del", namespace], stderr=subprocess.DEVNULL, check=False)
        self.namespaces = []
        # Deleting the switch namespace removes the uplink's other end, and with it this one; in case it did not:
        subprocess.run([IP, "link", "del", self.uplink], stderr=subprocess.DEVNULL, check=False)
        _LIVE.discard(self)


@atexit.register
def _remove_leftovers() -> None:
    for hosts in list(_LIVE):
        hosts.close()


class HostWriter(ProcessWriter):
    """A cluster client writing from inside a host (this file run as a script there); the record of a Writer, each
    acknowledgement with its CLOCK_MONOTONIC time (one clock for every process of the machine)."""

    def __init__(self, host: NetnsHost, seed, prefix: str):
        self.prefix = prefix
        self.acknowledged_at = {}
        super().__init__(host.command_prefix + [sys.executable, os.path.abspath(__file__), "write", seed.host,
                                                str(seed.port), prefix], seed.password, "the writer inside the host")

    def take(self, report: dict) -> None:
        self.acknowledged = {key.encode(): value.encode() for key, value in report["acknowledged"].items()}
        self.acknowledged_at = {key.encode(): at for key, at in report["acknowledged_at"].items()}


def _write_until_stdin_closes(host: str, port: int, prefix: str) -> None:
    seed = types.SimpleNamespace(host=host, port=port, password=os.environ.get("REDIS_PASSWORD"), tls=None)
    writer = Writer([seed], prefix=prefix, socket_timeout=1, socket_connect_timeout=1)
    writer.start()
    print("ready", flush=True)
    sys.stdin.read()
    writer.stop()
    print(json.dumps({
        "acknowledged": {key.decode(): value.decode() for key, value in writer.acknowledged.items()},
        "acknowledged_at": {key.decode(): at for key, at in writer.acknowledged_at.items()},
        "errors": writer.errors[:1000]}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"]:
        _write_until_stdin_closes(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: netns_hosts.py write HOST PORT PREFIX")
