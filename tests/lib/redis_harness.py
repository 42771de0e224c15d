# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real redis-server processes for tests, benchmarks and the demo.

Each node runs in cluster mode on free loopback ports, in its own temporary directory, and is
always stopped and removed again (context managers, plus an atexit safety net).

By default nodes listen on 127.0.0.1 of the caller's network namespace. The benchmarks run them
elsewhere with ``host`` (the address to bind and announce) and ``command_prefix`` (e.g.
``["ip", "netns", "exec", NS]``, which execs redis-server inside the namespace NS, so the process
started is still redis-server itself).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI", "redis-cli")
_LIVE = set()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether port can be bound on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out as a connection's local port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int, host: str = "127.0.0.1") -> list:
    """Distinct ports that are free right now, below the ephemeral range: a port from that range may be taken as the
    local port of any outgoing connection before the server binds it (redis-server then exits, address in use)."""
    low = min(_ephemeral_low(), 65536)
    ports = []
    candidate = random.randrange(10000, max(10001, low - 4 * count))
    while len(ports) < count:
        if candidate >= low:
            candidate = 10000
        if port_free(candidate, host) and port_free(candidate, "0.0.0.0"):
            ports.append(candidate)
        candidate += 1
    return ports


class TlsFiles:
    """A throwaway CA and one certificate (for 127.0.0.1 and any further addresses) that servers and clients both
    present, made by openssl."""

    def __init__(self, directory: str, addresses=()):
        self.ca = os.path.join(directory, "ca.crt")
        self.cert = os.path.join(directory, "node.crt")
        self.key = os.path.join(directory, "node.key")
        os.makedirs(directory, exist_ok=True)
        ca_key, request, extensions = (os.path.join(directory, name) for name in ("ca.key", "node.csr", "san.cnf"))
        with open(extensions, "w") as handle:
            handle.write("subjectAltName=%s,DNS:localhost\n"
                         % ",".join("IP:" + address for address in ("127.0.0.1",) + tuple(addresses)))
        for command in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", self.ca, "-days", "2",
             "-subj", "/CN=redisops test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", request, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial", "-out", self.cert,
             "-days", "2", "-extfile", extensions],
        ):
            subprocess.run(["openssl"] + command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def server_args(self, port: int) -> list:
        return ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                "--tls-cert-file", self.cert, "--tls-key-file", self.key, "--tls-ca-cert-file", self.ca]

    def client_kwargs(self) -> dict:
        return dict(ssl=True, ssl_ca_certs=self.ca, ssl_certfile=self.cert, ssl_keyfile=self.key)

    def cli_args(self) -> list:
        return ["--tls", "--cacert", self.ca, "--cert", self.cert, "--key", self.key]


class RedisNode:
    """One redis-server process."""

    def __init__(self, port: int, bus_port: int, workdir: str, host: str = "127.0.0.1",
                 cluster: bool = True, extra_args=(), password: str | None = None, command_prefix=(),
                 tls: TlsFiles | None = None):
        self.host = host
        self.port = port
        self.bus_port = bus_port
        self.dir = workdir
        self.password = password
        self.tls = tls
        args = [REDIS_SERVER, "--port", str(port), "--bind", host, "--dir", workdir,
                "--daemonize", "no", "--save", "", "--appendonly", "no", "--protected-mode", "no",
                "--repl-diskless-sync-delay", "0",
                "--logfile", os.path.join(workdir, "redis.log")]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                     "--cluster-replica-validity-factor", "0"]
        if password:
            args += ["--requirepass", password, "--masterauth", password]
        if tls:
            args += tls.server_args(port)
        self.args = list(command_prefix) + args + list(extra_args)
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _LIVE.add(self)

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    @property
    def log_file(self) -> str:
        return os.path.join(self.dir, "redis.log")

    def client(self, **kwargs) -> redis.Redis:
        if self.tls:
            kwargs.update(self.tls.client_kwargs())
        return redis.Redis(host=self.host, port=self.port, password=self.password, socket_timeout=10, **kwargs)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server on port %d exited; see %s/redis.log" % (self.port, self.dir))
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def call(self, *args):
        with self.client() as conn:
            return conn.execute_command(*args)

    def connection(self) -> redis.Connection:
        """A plain connection: its replies are the server's, with none of redis-py's reply parsing."""
        if self.tls:
            return redis.SSLConnection(host=self.host, port=self.port, password=self.password, ssl_ca_certs=self.tls.ca,
                                       ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key)
        return redis.Connection(host=self.host, port=self.port, password=self.password)

    def cluster_nodes(self) -> str:
        conn = self.connection()
        try:
            conn.send_command("CLUSTER", "NODES")
            return conn.read_response().decode()
        finally:
            conn.disconnect()

    def node_id(self) -> str:
        return self.call("CLUSTER", "MYID").decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """The same server again, on the same directory and ports (after kill: it reloads its data and nodes.conf)."""
        self.kill()
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _LIVE.add(self)
        self.wait_ready()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
        self.kill()
        _LIVE.discard(self)


class RedisNodes:
    """N redis-server processes in one temporary directory; a context manager that always cleans up."""

    def __init__(self, count: int, cluster: bool = True, password: str | None = None, extra_args=(),
                 host: str = "127.0.0.1", command_prefix=(), tls: TlsFiles | None = None):
        """count nodes bound to host; ports are picked free on this namespace's loopback (with a
        command_prefix that enters a fresh namespace, every port is free there anyway)."""
        self.root = tempfile.mkdtemp(prefix="redisops-test-")
        self.nodes = []
        try:
            ports = free_ports(2 * count)
            for index in range(count):
                workdir = os.path.join(self.root, "node%d" % index)
                os.mkdir(workdir)
                self.nodes.append(RedisNode(ports[2 * index], ports[2 * index + 1], workdir, host=host,
                                            cluster=cluster, password=password, extra_args=extra_args,
                                            command_prefix=command_prefix, tls=tls))
            for node in self.nodes:
                node.wait_ready()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, index):
        return self.nodes[index]

    @property
    def addresses(self) -> list:
        return [node.address for node in self.nodes]

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def form_cluster(nodes, replicas: int = 1, timeout: float = 30.0) -> None:
    """Form a cluster with the reference tool, then wait until every node agrees and reports ok."""
    args = [REDIS_CLI, "--cluster", "create"] + [node.address for node in nodes]
    args += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    password = nodes[0].password
    env = dict(os.environ, REDISCLI_AUTH=password) if password else None
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, env=env)
    wait_converged(nodes, timeout)


def wait_converged(nodes, timeout: float = 30.0) -> None:
    """Until every node reports cluster_state:ok and all hold the same view of roles, masters and slots."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            views = [_view(node) for node in nodes]
            if all(view is not None for view in views) and len(set(views)) == 1 and len(views[0]) == len(nodes):
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("cluster did not converge within %.0f s" % timeout)
        time.sleep(0.1)


def _view(node: RedisNode):
    """(id, role, master, slots) of every node as this node sees it; None while not ok or unsettled."""
    if b"cluster_state:ok" not in node.call("CLUSTER", "INFO"):
        return None
    view = []
    for line in node.cluster_nodes().splitlines():
        fields = line.split()
        flags = set(fields[2].split(","))
        if flags & {"handshake", "fail", "fail?", "noaddr"}:
            return None
        view.append((fields[0], "slave" in flags, fields[3], tuple(fields[8:])))
    return frozenset(view)


def cluster_keys(nodes) -> dict:
    """Every key -> value over the masters (for before/after comparisons)."""
    values = {}
    for node in nodes:
        with node.client() as conn:
            if conn.execute_command("ROLE")[0] != b"master":
                continue
            for key in conn.scan_iter(count=1000):
                values[key] = conn.dump(key)
    return values


@atexit.register
def _stop_leftovers() -> None:
    for node in list(_LIVE):
        node.stop()


@contextlib.contextmanager
def made_in_temp_dir(make, prefix: str):
    """make(root) for a new temporary directory root; its close() and root's removal afterwards, whatever happens."""
    root = tempfile.mkdtemp(prefix=prefix)
    made = None
    try:
        made = make(root)
        yield made
    finally:
        if made:
            made.close()
        shutil.rmtree(root, ignore_errors=True)
