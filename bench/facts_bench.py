# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: redis_cluster_facts over 60 real nodes, against `redis-cli --cluster check` in the same run.

Case 1 (loopback): 60 redis-server nodes on 127.0.0.1 (30 masters + 30 replicas, formed with
`redis-cli --cluster create`), some keys; redis_cluster_facts runs through ansible-playbook several
times (its own `elapsed_ms`, and the ansible-playbook wall time), and `redis-cli --cluster check`
runs on the same cluster.

Case 2 (per-node latency): the 60 nodes run inside a network namespace of their own, and ansible,
the module and redis-cli inside a second one. The two namespaces are joined by a point-to-point
link made of two TUN devices and a small delay line in user space (this file, `--delay-line`):
it holds every IP packet for a one-way delay chosen by the node's TCP port, in both directions,
so each node can be given its own latency (the kernel here has no netem qdisc, see
docs/benchmarks.md). The addresses (10.213.0.1 and 10.213.0.2) exist only inside those two
namespaces; nothing else routes there. Everything (namespaces, links, processes) is removed
again in `finally` blocks, Ctrl-C included.

The markdown tables go to stdout and into docs/benchmarks.md under "## redis_cluster_facts";
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import heapq
import json
import os
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import redis  # noqa: E402
from playbook_runs import COLLECTIONS_PATH, run_module  # noqa: E402
from redis_harness import REDIS_CLI, REDIS_SERVER, RedisNodes, form_cluster  # noqa: E402
from bench_docs import DOCS, run_main, versions, write_section  # noqa: E402

sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.redisops.cluster.plugins.module_utils import _client, _topology  # noqa: E402

NODES = 60
REPLICAS = 1
KEYS = 10000
SECTION = "## redis_cluster_facts"
BUDGET_MS = 1000

# Case 2: names and addresses that exist only while the benchmark runs, and only inside its namespaces.
CLIENT_ADDR = "10.213.0.1"
SERVER_ADDR = "10.213.0.2"
FAST_MS = 5.0   # one-way delay per packet, every node
SLOW_MS = 50.0  # one-way delay per packet, the one slow node

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def log(message: str) -> None:
    print("[bench] " + message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Measurements shared by both cases


def module_runs(seed_args: dict, runs: int) -> dict:
    """redis_cluster_facts through ansible-playbook, `runs` times: elapsed_ms and wall ms of each run."""
    elapsed, wall = [], []
    for _run in range(runs):
        started = time.perf_counter()
        result = run_module("redis_cluster_facts", seed_args)
        wall.append((time.perf_counter() - started) * 1000.0)
        if result.get("failed"):
            raise RuntimeError("redis_cluster_facts failed: %s" % result.get("msg"))
        facts = result["ansible_facts"]["redis_cluster"]
        if facts["state"] != "ok" or facts["reachable_nodes"] != NODES:
            raise RuntimeError("unexpected facts: state %s, %s reachable nodes, findings %s"
                               % (facts["state"], facts["reachable_nodes"], facts["findings"]))
        elapsed.append(float(result["elapsed_ms"]))
    return {"elapsed": elapsed, "wall": wall}


def redis_cli_check_runs(address: str, runs: int) -> list:
    """Wall ms of `redis-cli --cluster check address`, which must pass."""
    times = []
    for _run in range(runs):
        started = time.perf_counter()
        proc = subprocess.run([REDIS_CLI, "--cluster", "check", address], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False, timeout=300)
        times.append((time.perf_counter() - started) * 1000.0)
        if proc.returncode != 0 or "[OK] All 16384 slots covered." not in proc.stdout:
            raise RuntimeError("redis-cli --cluster check failed (rc %d):\n%s" % (proc.returncode, proc.stdout))
    return times


def options() -> _client.ConnectionOptions:
    return _client.ConnectionOptions()


def observe_instrumented(seeds) -> dict:
    """The module's own observe_cluster in this process, with its fan-out rounds counted and timed,
    then the facts built from it: where the module's time goes."""
    rounds = []
    original = _client.fan_out

    def counting_fan_out(function, items, **kwargs):
        items = list(items)
        started = time.perf_counter()
        try:
            return original(function, items, **kwargs)
        finally:
            rounds.append((len(items), (time.perf_counter() - started) * 1000.0))

    _client.fan_out = counting_fan_out
    try:
        started = time.perf_counter()
        state = _client.observe_cluster(seeds, options())
        observed = time.perf_counter()
    finally:
        _client.fan_out = original
    _client.require_usable(state)
    facts = _topology.cluster_facts(state, _topology.assess(state, 2.0))
    built = time.perf_counter()
    if facts["reachable_nodes"] != NODES:
        raise RuntimeError("in-process observation reached %s nodes" % facts["reachable_nodes"])
    return {"rounds": rounds, "observe_ms": (observed - started) * 1000.0, "facts_ms": (built - observed) * 1000.0}


def serial_reads(addresses, passes: int = 2) -> dict:
    """observe_node (the module's per-node read) on every node, one after the other: ms per node, the
    best of `passes` passes (noise from other work on the machine only ever adds)."""
    times = {}
    for _pass in range(passes):
        for host, port in addresses:
            started = time.perf_counter()
            observation = _client.observe_node(_topology.NodeAddress(host, port), options())
            took = (time.perf_counter() - started) * 1000.0
            if not observation.reachable:
                raise RuntimeError("%s:%d: %s" % (host, port, observation.error))
            key = "%s:%d" % (host, port)
            times[key] = min(took, times.get(key, took))
    return times


def write_keys(host: str, port: int, count: int) -> None:
    client = redis.RedisCluster(host=host, port=port)
    try:
        pipe = client.pipeline()
        for index in range(count):
            pipe.set("bench:%d" % index, "value %d" % index)
        pipe.execute()
    finally:
        client.close()


def start_cluster(**node_kwargs) -> RedisNodes:
    started = time.perf_counter()
    nodes = RedisNodes(NODES, **node_kwargs)
    try:
        form_cluster(nodes.nodes, replicas=REPLICAS, timeout=120)
        write_keys(nodes[0].host, nodes[0].port, KEYS)
    except BaseException:
        nodes.close()
        raise
    log("%d nodes up, cluster formed, %d keys written (%.1f s)" % (NODES, KEYS, time.perf_counter() - started))
    return nodes


# ---------------------------------------------------------------------------------------------
# Case 1: loopback


def loopback_case(runs: int) -> dict:
    log("case 1: %d nodes on 127.0.0.1" % NODES)
    with start_cluster() as nodes:
        seed = nodes[0]
        module = module_runs({"login_host": seed.host, "login_port": seed.port}, runs)
        log("module: elapsed_ms %s" % module["elapsed"])
        inproc = [observe_instrumented((_topology.NodeAddress(seed.host, seed.port),)) for _run in range(runs)]
        check = redis_cli_check_runs(seed.address, runs)
        log("redis-cli --cluster check: %s ms" % ["%.0f" % value for value in check])
    return {"module": module, "inproc": inproc, "check": check}


# ---------------------------------------------------------------------------------------------
# Case 2: the delay line (a separate process, started by the parent in the root namespace)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def node_port(packet: bytes, towards_server: bool):
    """The node's TCP port of an IPv4 packet: the destination port towards the nodes, else the source port."""
    if len(packet) < 24 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    offset = (packet[0] & 0x0F) * 4
    if len(packet) < offset + 4:
        return None
    source, destination = struct.unpack_from("!HH", packet, offset)
    return destination if towards_server else source


def delay_line(control_path: str, client_if: str, server_if: str) -> int:
    """Forward IP packets between two TUN devices, each held for the one-way delay of its node's port.

    Controlled over a Unix socket: a JSON line {"default_ms": x, "ports": {"port": ms}} sets the
    delays ({"stats": true} only asks); the reply is {"ok": true, "packets": n}. Ends when its
    standard input closes (the parent is gone) or on SIGTERM/SIGINT.
    """
    # Scheduled ahead of the benchmark's own work, as the kernel's netem would be: it sleeps in select()
    # between packets, so it takes little CPU, but a late wake-up would stretch every delay.
    with contextlib.suppress(OSError):
        os.nice(-15)
    client_fd, server_fd = open_tun(client_if), open_tun(server_if)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(control_path)
    control.listen(4)
    peer = {client_fd: server_fd, server_fd: client_fd}
    default, per_port = 0.0, {}
    queue, sequence, packets = [], 0, 0
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        readable = select.select([client_fd, server_fd, control, stdin], [], [], timeout)[0]
        for source in readable:
            if source == stdin:
                if not os.read(stdin, 4096):
                    return 0
            elif source is control:
                conn = control.accept()[0]
                with conn, conn.makefile("rw") as stream:
                    conn.settimeout(5)
                    request = json.loads(stream.readline())
                    if not request.get("stats"):
                        default = float(request.get("default_ms", 0.0)) / 1000.0
                        per_port = {int(port): ms / 1000.0 for port, ms in request.get("ports", {}).items()}
                    stream.write(json.dumps({"ok": True, "packets": packets}) + "\n")
            else:
                arrived = time.monotonic()
                while True:
                    try:
                        packet = os.read(source, 65536)
                    except BlockingIOError:
                        break
                    packets += 1
                    sequence += 1
                    delay = per_port.get(node_port(packet, source == client_fd), default)
                    heapq.heappush(queue, (arrived + delay, sequence, peer[source], packet))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _due, _seq, target, packet = heapq.heappop(queue)
            with contextlib.suppress(OSError):  # a full TUN queue drops, like a link would
                os.write(target, packet)


def set_delays(control_path: str, default_ms: float, ports=None) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(control_path)
        with conn.makefile("rw") as stream:
            request = {"default_ms": default_ms, "ports": {str(port): ms for port, ms in (ports or {}).items()}}
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            return json.loads(stream.readline())


# ---------------------------------------------------------------------------------------------
# Case 2: the worker (runs inside the client namespace)


def ping_rtt(host: str, port: int, count: int = 20) -> float:
    """Median round trip of PING on one open connection, in ms."""
    conn = redis.Connection(host=host, port=port)
    try:
        conn.connect()
        times = []
        for _ping in range(count):
            started = time.perf_counter()
            conn.send_command("PING")
            conn.read_response()
            times.append((time.perf_counter() - started) * 1000.0)
        return statistics.median(times)
    finally:
        conn.disconnect()


def read_phases(host: str, port: int) -> dict:
    """Where one node read goes, done like observe_node: TCP connect alone, redis-py's connection set-up
    (TCP connect plus what redis-py sends on connect), then the pipelined reads; ms, and reply bytes."""
    started = time.perf_counter()
    socket.create_connection((host, port), timeout=10).close()
    tcp = time.perf_counter()
    conn = redis.Connection(host=host, port=port)
    try:
        conn.connect()
        connected = time.perf_counter()
        commands = [("CLUSTER", "NODES"), ("CLUSTER", "INFO"), ("INFO",) + _client.INFO_SECTIONS]
        conn.send_packed_command(conn.pack_commands(commands))
        size = sum(len(conn.read_response()) for _command in commands)
        done = time.perf_counter()
    finally:
        conn.disconnect()
    return {"tcp_connect": (tcp - started) * 1000.0, "setup": (connected - tcp) * 1000.0,
            "pipeline": (done - connected) * 1000.0, "reply_bytes": size}


def _resp_command(buffer: bytes):
    """One RESP array of bulk strings from the front of buffer: (args, rest), or None while incomplete."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    header, rest = buffer.split(b"\r\n", 1)
    args = []
    for _index in range(int(header[1:])):
        if b"\r\n" not in rest:
            return None
        length_line, rest = rest.split(b"\r\n", 1)
        length = int(length_line[1:])
        if len(rest) < length + 2:
            return None
        args.append(rest[:length])
        rest = rest[length + 2:]
    return args, rest


def connect_commands() -> str:
    """What redis-py sends when a connection opens, seen by a stand-in server on loopback that
    answers HELLO with its protocol and everything else with +OK."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = []

    def serve():
        conn = listener.accept()[0]
        with conn:
            buffer = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while True:
                    parsed = _resp_command(buffer)
                    if parsed is None:
                        break
                    args, buffer = parsed
                    words = [arg.decode(errors="replace") for arg in args]
                    if words[0].upper() == "HELLO":
                        seen.append("HELLO %s" % (words[1] if len(words) > 1 else ""))
                        proto = int(words[1]) if len(words) > 1 else 2
                        conn.sendall(b"%%1\r\n+proto\r\n:%d\r\n" % proto if proto == 3 else b"*2\r\n$5\r\nproto\r\n:2\r\n")
                    else:
                        seen.append(" ".join(words[:3]))
                        conn.sendall(b"+OK\r\n")

    with listener:
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        conn = redis.Connection(host="127.0.0.1", port=listener.getsockname()[1], socket_timeout=5)
        conn.connect()
        conn.disconnect()
        thread.join(5)
    return ", ".join("`%s`" % command for command in seen) + (" (each awaited in turn)" if len(seen) > 1 else "") \
        if seen else "no command"


def latency_worker(control_path: str, server_ns: str, out_path: str, runs: int) -> int:
    nodes = start_cluster(host=SERVER_ADDR, command_prefix=["ip", "netns", "exec", server_ns])
    with nodes:
        seed = nodes[0]
        slow = [node for node in nodes if node.call("ROLE")[0] == b"master" and node is not seed][-1]
        addresses = [(node.host, node.port) for node in nodes]
        seeds_one = {"login_host": seed.host, "login_port": seed.port}
        seeds_all = {"nodes": [node.address for node in nodes]}
        scenarios = [
            ("none", "no added delay (0 ms, through the delay line)", 0.0, {}, seeds_one, True),
            ("uniform", "%g ms on every node" % FAST_MS, FAST_MS, {}, seeds_one, True),
            ("slow", "%g ms on 59 nodes, %g ms on one (not the seed)" % (FAST_MS, SLOW_MS),
             FAST_MS, {slow.port: SLOW_MS}, seeds_one, True),
            ("slow_all_seeds", "as above, all 60 nodes given as seeds (`nodes`)",
             FAST_MS, {slow.port: SLOW_MS}, seeds_all, False),
        ]
        results = {"slow_node": slow.address, "seed": seed.address, "scenarios": []}
        for key, label, default_ms, ports, seed_args, check in scenarios:
            set_delays(control_path, default_ms, ports)
            log("case 2, %s" % label)
            rtt_fast = ping_rtt(seed.host, seed.port)
            rtt_slow = ping_rtt(slow.host, slow.port)
            module = module_runs(seed_args, runs)
            log("module: elapsed_ms %s" % module["elapsed"])
            seed_addresses = ([_topology.NodeAddress(seed.host, seed.port)] if "login_host" in seed_args
                              else [_topology.NodeAddress(host, port) for host, port in addresses])
            inproc = observe_instrumented(tuple(seed_addresses))
            serial = serial_reads(addresses)
            phases = {"fast": read_phases(seed.host, seed.port), "slow": read_phases(slow.host, slow.port)}
            check_ms = redis_cli_check_runs(seed.address, max(1, min(runs, 3))) if check else None
            if check_ms:
                log("redis-cli --cluster check: %s ms" % ["%.0f" % value for value in check_ms])
            results["scenarios"].append({
                "key": key, "label": label, "seeds": len(seed_addresses), "rtt_fast": rtt_fast,
                "rtt_slow": rtt_slow, "module": module, "inproc": inproc, "serial": serial,
                "seed_address": seed.address, "check": check_ms, "phases": phases,
            })
        results["packets"] = set_delays(control_path, 0.0)["packets"]
    results["connect_commands"] = connect_commands()
    with open(out_path, "w") as handle:
        json.dump(results, handle)
    return 0


# ---------------------------------------------------------------------------------------------
# Case 2: namespaces, links and clean-up (root namespace)


def run(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def latency_unavailable() -> str | None:
    """Why case 2 cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def netem_available(namespace: str) -> bool:
    """Whether `tc qdisc ... netem` works (probed in one of our own namespaces), for the notes only."""
    if shutil.which("tc") is None:
        return False
    return run("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
               "delay", "5ms", check=False).returncode == 0


def _running(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_namespace_processes(namespace: str, timeout: float = 10.0) -> None:
    """Kill what still runs inside a namespace this benchmark made (its own redis-servers), and wait until it is gone."""
    pids = [int(pid) for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split() if pid.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def latency_case(runs: int) -> dict:
    tag = str(os.getpid())
    client_ns, server_ns = "rbench-cli-" + tag, "rbench-srv-" + tag
    client_if, server_if = ("rbc" + tag)[:15], ("rbs" + tag)[:15]
    workdir = tempfile.mkdtemp(prefix="redisops-bench-")
    control_path = os.path.join(workdir, "delay.sock")
    out_path = os.path.join(workdir, "latency.json")
    made, line, worker = [], None, None
    try:
        for namespace in (client_ns, server_ns):
            run("ip", "netns", "add", namespace)
            made.append(namespace)
        netem = netem_available(server_ns)
        line = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--delay-line", control_path,
                                 client_if, server_if], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if line.stdout.readline().strip() != "ready":
            raise RuntimeError("the delay line did not start")
        for namespace, device, local, remote in ((client_ns, client_if, CLIENT_ADDR, SERVER_ADDR),
                                                 (server_ns, server_if, SERVER_ADDR, CLIENT_ADDR)):
            run("ip", "link", "set", device, "netns", namespace)
            run("ip", "netns", "exec", namespace, "sh", "-c",  # no IPv6 chatter on the link (where IPv6 exists)
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                check=False)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
            run("ip", "-n", namespace, "addr", "add", local, "peer", remote, "dev", device)
            run("ip", "-n", namespace, "link", "set", device, "up")
        log("case 2: namespaces %s (module, ansible, redis-cli) and %s (60 nodes), joined by a TUN delay line"
            % (client_ns, server_ns))
        worker = subprocess.Popen(["ip", "netns", "exec", client_ns, sys.executable, os.path.abspath(__file__),
                                   "--latency-worker", control_path, server_ns, out_path, "--runs", str(runs)])
        if worker.wait() != 0:
            raise RuntimeError("the latency worker failed (rc %d)" % worker.returncode)
        with open(out_path) as handle:
            results = json.load(handle)
        results["netem"] = netem
        return results
    finally:
        if worker is not None and worker.poll() is None:
            # On Ctrl-C the worker has its own SIGINT and stops its nodes; give it the time for that.
            for stop in (None, worker.terminate, worker.kill):
                if stop is not None:
                    stop()
                try:
                    worker.wait(15)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for namespace in made:
            kill_namespace_processes(namespace)
        if line is not None:
            line.stdin.close()
            try:
                line.wait(5)
            except subprocess.TimeoutExpired:
                line.kill()
                line.wait()
        for namespace in made:
            run("ip", "netns", "del", namespace, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Report


def ms(value: float) -> str:
    return "%.0f ms" % value if value >= 10 else "%.1f ms" % value


def ratio(numerator: float, denominator: float) -> str:
    return "%.2f" % (numerator / denominator)


def signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + ms(abs(value))


def follows(module_growth: float, serial_growth: float) -> str:
    """The verdict on parallelism: does the module's time grow like the slowest node or like the sum?"""
    share = module_growth / serial_growth if serial_growth > 0 else float("inf")
    if share < 0.5:
        return ("With the same delay on every node, the module's time grew by %.0f%% of what a one-by-one "
                "reader's grew: it follows the slowest node, not the sum of the nodes." % (100 * share))
    return ("With the same delay on every node, the module's time grew by %.0f%% of what a one-by-one "
            "reader's grew: in this run it did NOT behave like a parallel reader." % (100 * share))


def rounds_text(rounds) -> str:
    return "%d (%s)" % (len(rounds), " + ".join(str(width) for width, _ms in rounds))


def report(loopback: dict, latency, latency_skipped, runs: int, load=(0.0, 0.0)) -> str:
    lines = [SECTION, ""]
    lines.append("Measured by `make bench` (`bench/facts_bench.py`) on %s: %d cores, %s. %d nodes (%d masters + "
                 "%d replicas, formed with `redis-cli --cluster create`), %d keys. The module runs through "
                 "`ansible-playbook` as users run it; `elapsed_ms` is the module's own time (its observation "
                 "and facts), without ansible's start-up. `redis-cli --cluster check` runs on the same cluster "
                 "in the same run; compare the ratios, not the absolute times. Load average (1 min) when the run "
                 "started and ended: %.1f and %.1f; work of other processes on the machine shows up as noise."
                 % (datetime.date.today().isoformat(), os.cpu_count(), versions(REDIS_SERVER), NODES, NODES // 2,
                    NODES // 2, KEYS, load[0], load[1]))
    lines += ["", "### Loopback (127.0.0.1)", ""]
    module, check, inproc = loopback["module"], loopback["check"], loopback["inproc"]
    elapsed_median = statistics.median(module["elapsed"])
    rounds = inproc[0]["rounds"]
    lines += [
        "| measure | median | min | runs |",
        "| --- | ---: | ---: | ---: |",
        "| redis_cluster_facts module time (`elapsed_ms`) | %s | %s | %d |"
        % (ms(elapsed_median), ms(min(module["elapsed"])), len(module["elapsed"])),
        "| ansible-playbook wall time (one task + result collection, ansible start-up included) | %s | %s | %d |"
        % (ms(statistics.median(module["wall"])), ms(min(module["wall"])), len(module["wall"])),
        "| in process: reading the nodes, %s discovery rounds | %s | %s | %d |"
        % (rounds_text(rounds), ms(statistics.median(r["observe_ms"] for r in inproc)),
           ms(min(r["observe_ms"] for r in inproc)), len(inproc)),
        "| in process: building facts and findings from the replies | %s | %s | %d |"
        % (ms(statistics.median(r["facts_ms"] for r in inproc)), ms(min(r["facts_ms"] for r in inproc)), len(inproc)),
        "| `redis-cli --cluster check` wall time | %s | %s | %d |" % (ms(statistics.median(check)), ms(min(check)), len(check)),
        "| **ratio** module time / redis-cli check (medians) | %s | | |" % ratio(elapsed_median, statistics.median(check)),
        "| **ratio** ansible-playbook wall / redis-cli check (medians) | %s | | |"
        % ratio(statistics.median(module["wall"]), statistics.median(check)),
        "",
        "Requirement, module time under %d ms over %d nodes: **%s** (median %s)."
        % (BUDGET_MS, NODES, "met" if elapsed_median < BUDGET_MS else "NOT met", ms(elapsed_median)),
        "",
        "The module sends CLUSTER NODES, CLUSTER INFO and INFO to every node and builds the facts and "
        "findings; `redis-cli --cluster check` (C) reads CLUSTER NODES twice from every node and DBSIZE "
        "from every master, one node after the other over one connection each, and checks slot coverage "
        "and agreement. Its wall time includes starting the process "
        "(a few ms); `elapsed_ms` excludes the Python start-up and imports of the module. The two "
        "\"in process\" rows run the module's own observe_cluster and assess/cluster_facts in the "
        "benchmark process, to show where its time goes.",
    ]
    lines += ["", "### Per-node latency", ""]
    if latency is None:
        lines.append("Not measured in this run: %s." % latency_skipped)
        return "\n".join(lines) + "\n"
    lines += [
        "The nodes run in one network namespace, ansible, the module and redis-cli in another. "
        "Between them, a point-to-point link of two TUN devices and a delay line in user space holds "
        "every IP packet for the one-way delay of its node (chosen by the node's TCP port), in both "
        "directions, so a round trip to a node costs twice its delay, TCP handshake included. "
        "%s Gossip and replication stay inside the nodes' namespace and are not delayed. "
        "Slow node: %s (a master); seed: %s."
        % ("The kernel here has no netem qdisc (`tc qdisc add ... netem` fails: CONFIG_NET_SCH_NETEM is not "
           "set), so the delay line stands in for it; being Python, it adds a fraction of a millisecond "
           "per packet (see the measured round trips)." if not latency["netem"] else
           "(netem works on this kernel, but the user-space delay line is used all the same, for "
           "per-node delays.)", latency["slow_node"], latency["seed"]),
        "",
        "| scenario (one-way delay per packet) | seeds | discovery rounds (nodes read) | PING round trip, fast / slow node "
        "| module `elapsed_ms` median (min) | added by the delay (min − no-delay min) "
        "| slowest node per round, summed | every node one by one, summed | module / one-by-one sum "
        "| `redis-cli --cluster check` median | module / redis-cli |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = {}
    last_check = None
    baseline = min(latency["scenarios"][0]["module"]["elapsed"])
    for scenario in latency["scenarios"]:
        elapsed = scenario["module"]["elapsed"]
        median = statistics.median(elapsed)
        serial = scenario["serial"]
        rounds = scenario["inproc"]["rounds"]
        # The parallel ideal: each round lasts as long as its slowest node (from the one-by-one reads).
        if scenario["seeds"] == 1:
            others = [value for address, value in serial.items() if address != scenario["seed_address"]]
            ideal = serial[scenario["seed_address"]] + (max(others) if len(rounds) > 1 else 0.0)
        else:
            ideal = max(serial.values())
        check, note = scenario["check"], ""
        if check is None:
            check, note = last_check, " (same cluster and delays as above)"
        last_check = check
        rows[scenario["key"]] = {"median": median, "best": min(elapsed), "ideal": ideal, "sum": sum(serial.values())}
        lines.append("| %s | %d | %s | %s / %s | %s (%s) | %s | %s | %s | %s | %s | %s |" % (
            scenario["label"], scenario["seeds"], rounds_text(rounds), ms(scenario["rtt_fast"]),
            ms(scenario["rtt_slow"]), ms(median), ms(min(elapsed)),
            "—" if scenario["key"] == "none" else ms(min(elapsed) - baseline), ms(ideal), ms(sum(serial.values())),
            ratio(median, sum(serial.values())), ms(statistics.median(check)) + note,
            ratio(median, statistics.median(check))))
    none, uniform, slow = rows["none"], rows["uniform"], rows["slow"]
    lines += [
        "",
        "\"Slowest node per round, summed\" is what a perfectly parallel reader would take: the seed's "
        "read, then the slowest of the others, from one-by-one reads with the module's own "
        "`observe_node` in the benchmark process (best of two passes). \"Every node one by one, summed\" is what a reader "
        "that visits the nodes in turn would take. Module runs per scenario: %d; redis-cli check runs: %d. "
        "The delay line forwarded %d packets in all."
        % (runs, max(1, min(runs, 3)), latency["packets"]),
        "",
        "Reading (best runs; other work on the machine only ever adds time): %g ms on every node added "
        "%s to the module, %s to the slowest node per round and %s to the one-by-one sum. One node at %g ms "
        "then added %s to the module, %s to the slowest node per round and %s to the one-by-one sum. %s "
        "The distance from the per-round ideal, either way, is the module's own CPU work (parsing 60 replies "
        "on 60 threads under one interpreter lock, then building facts: %s with no delay, against %s for "
        "the reads themselves), which can overlap the wait for a slow node or lengthen each step of a read." % (
            FAST_MS, signed(uniform["best"] - none["best"]), signed(uniform["ideal"] - none["ideal"]),
            signed(uniform["sum"] - none["sum"]), SLOW_MS, signed(slow["best"] - uniform["best"]),
            signed(slow["ideal"] - uniform["ideal"]), signed(slow["sum"] - uniform["sum"]),
            follows(uniform["best"] - none["best"], uniform["sum"] - none["sum"]), ms(none["best"]),
            ms(none["ideal"])),
        "",
        "Where one node's read goes: the steps of `observe_node`, timed one by one. redis-py %s opens a "
        "connection with %s before the module's one pipeline; \"round trips\" divides the whole read by "
        "the node's PING round trip." % (redis.__version__, latency["connect_commands"]),
        "",
        "| scenario, node | PING round trip | TCP connect alone | redis-py `connect()` (TCP connect + set-up commands) "
        "| the pipelined CLUSTER NODES + CLUSTER INFO + INFO (reply size) | whole `observe_node` (round trips) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in latency["scenarios"]:
        if scenario["seeds"] != 1 or scenario["key"] == "none":
            continue
        for which, rtt in (("fast", scenario["rtt_fast"]), ("slow", scenario["rtt_slow"])):
            if which == "slow" and scenario["key"] != "slow":
                continue
            phase = scenario["phases"][which]
            address = scenario["seed_address"] if which == "fast" else latency["slow_node"]
            whole = scenario["serial"][address]
            lines.append("| %s, %s node | %s | %s | %s | %s (%.1f KiB) | %s (%.1f) |" % (
                scenario["label"], which, ms(rtt), ms(phase["tcp_connect"]), ms(phase["setup"]),
                ms(phase["pipeline"]), phase["reply_bytes"] / 1024.0, ms(whole), whole / rtt))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5, help="module and redis-cli runs per measurement (default 5)")
    parser.add_argument("--skip-latency", action="store_true", help="only the loopback case")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--delay-line", nargs=3, metavar=("CONTROL", "CLIENT_IF", "SERVER_IF"), help=argparse.SUPPRESS)
    parser.add_argument("--latency-worker", nargs=3, metavar=("CONTROL", "SERVER_NS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.delay_line:
        signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
        try:
            return delay_line(*args.delay_line)
        except KeyboardInterrupt:
            return 130
    if args.latency_worker:
        # SIGTERM from the parent unwinds like Ctrl-C, so the nodes are stopped and their files removed.
        signal.signal(signal.SIGTERM, lambda *_args: sys.exit(143))
        return latency_worker(*args.latency_worker, runs=args.runs)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    loopback = loopback_case(args.runs)
    latency, skipped = None, "skipped (--skip-latency)" if args.skip_latency else latency_unavailable()
    if skipped is None:
        latency = latency_case(args.runs)
    section = report(loopback, latency, skipped, args.runs, (load_before, os.getloadavg()[0]))
    print(section)
    if not args.no_docs:
        write_section(SECTION, section)
        log("wrote %s" % os.path.relpath(DOCS, ROOT))
    log("total %.0f s" % (time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    run_main(main)
