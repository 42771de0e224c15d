# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connections to Redis nodes: auth, TLS, timeouts, pipelining, parallel fan-out, discovery. Private to redisops.cluster.

One plain connection per node (no redis-py cluster client): the collection decides itself which node
it talks to, and replies come back raw, exactly as the server sent them.
"""

from __future__ import annotations

import dataclasses
import inspect
import socket
import traceback
from concurrent.futures import ThreadPoolExecutor

from ._topology import (
    ClusterState, NodeObservation, next_addresses, observation_from_replies, parse_info, server_identity,
    replica_stray_slots, unserved_slots, with_key_counts,
)

try:
    import redis
    from redis.exceptions import AuthenticationError, ConnectionError as RedisConnectionError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()

    # Stand-ins so the collection imports without redis-py; the modules then fail with missing_required_lib.
    class RedisError(Exception):
        pass

    class ResponseError(RedisError):
        pass

    class AuthenticationError(RedisError):
        pass

    class RedisConnectionError(RedisError):
        pass
else:
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None

try:
    import hiredis
except ImportError:
    hiredis = None

READ_SIZE = 1 << 17
# Arguments per write of a pipeline: a MIGRATE of a thousand keys starts while the next one is packed.
SEND_WORDS = 1024

# Fan-out width: enough to read a large cluster in one round, small enough for a control node.
MAX_PARALLEL = 64
# A discovery pass per hop; real clusters need two (seeds, then everyone they know).
MAX_DISCOVERY_ROUNDS = 8
INFO_SECTIONS = ("server", "memory", "persistence", "replication", "keyspace")


def _lean_connect_kwargs() -> dict:
    """RESP2 and no CLIENT SETINFO where redis-py supports turning them off: a connection then costs the TCP
    handshake plus AUTH, not three more round trips per node (recent redis-py sends HELLO 3 and SETINFO twice)."""
    if not HAS_REDIS:
        return {}
    init = getattr(redis.connection, "AbstractConnection", redis.Connection).__init__
    try:
        accepted = inspect.signature(init).parameters
    except (TypeError, ValueError):
        return {}
    kwargs = {"protocol": 2} if "protocol" in accepted else {}
    if "driver_info" in accepted:
        kwargs["driver_info"] = None
    elif "lib_name" in accepted:
        kwargs.update(lib_name=None, lib_version=None)
    return kwargs


LEAN_CONNECT_KWARGS = _lean_connect_kwargs()


class ClusterClientError(Exception):
    """A failure to report to the user as it is; the message never holds a secret."""


@dataclasses.dataclass(frozen=True)
class ConnectionOptions:
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    validate_certs: bool = True
    ca_certs: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    connect_timeout: float = 2.0
    command_timeout: float = 10.0


_WORDS = {}  # str or int argument -> its RESP bulk string: command names, node ids, hosts and slot numbers repeat
_MAX_WORDS = 65536
LONG_COMMAND = 16  # arguments past which hiredis packs a command
_HEADERS = tuple(b"*%d\r\n" % count for count in range(64))


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _word(value) -> bytes:
    """A str or int argument as a RESP bulk string, remembered: commands repeat them by the thousand."""
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8")
    elif kind is int:
        data = b"%d" % value
    else:
        raise TypeError("cannot send %s to Redis" % kind.__name__)
    piece = _bulk(data)
    if len(_WORDS) < _MAX_WORDS:
        _WORDS[value] = piece
    return piece


def _header(count: int) -> bytes:
    return _HEADERS[count] if count < 64 else b"*%d\r\n" % count


def pack_commands(commands) -> bytes:
    """RESP for many commands at once. redis-py's own packer costs more than the server's work for the pipelines
    of small commands a move sends (tens of thousands of SETSLOT, GETKEYSINSLOT and MIGRATE)."""
    chunks = []
    append = chunks.append
    words = _WORDS
    for command in commands:
        count = len(command)
        if count > LONG_COMMAND and hiredis is not None:
            # A MIGRATE of dozens of keys: hiredis packs those in half the time.
            append(hiredis.pack_command(tuple(command)))
            continue
        append(_header(count))
        for value in command:
            kind = type(value)
            if kind is bytes:  # keys and values: _bulk inlined, it runs once per key moved
                append(b"$%d\r\n%s\r\n" % (len(value), value))
            elif kind is str or kind is int:
                append(words.get(value) or _word(value))
            elif kind is float:
                append(_bulk(repr(value).encode("ascii")))
            else:
                raise TypeError("cannot send %s to Redis" % kind.__name__)
    return b"".join(chunks)


SLOT = object()  # where per_slot puts each slot in a command template


class Packed:
    """Commands already in RESP (count of them), sent as they are."""

    __slots__ = ("data", "count")

    def __init__(self, data: bytes, count: int):
        self.data = data
        self.count = count


def per_slot(slots, *templates) -> Packed:
    """The templates' commands for every slot in turn, SLOT replaced by the slot. A move sends each of its per-slot
    commands for thousands of slots: packed around the slot once, they cost a third of packing each command."""
    pieces = []
    for template in templates:
        at = template.index(SLOT)
        pieces.append((_header(len(template)) + _args(template[:at]), _args(template[at + 1:])))
    words = _WORDS
    chunks = []
    extend = chunks.extend
    for slot in slots:
        word = words.get(slot) or _word(slot)
        for head, tail in pieces:
            extend((head, word, tail))
    return Packed(b"".join(chunks), len(slots) * len(templates))


def _args(values) -> bytes:
    """values as RESP bulk strings, without the array header."""
    return pack_commands([values])[len(_header(len(values))):]


def command_count(commands) -> int:
    """How many replies commands (tuples and Packed) get."""
    return sum(command.count if isinstance(command, Packed) else 1 for command in commands)


class NodeConnection:
    """One connection to one node; replies are returned raw (bytes), never reinterpreted."""

    def __init__(self, host: str, port: int, options: ConnectionOptions):
        kwargs = dict(
            host=host, port=port, username=options.user, password=options.password,
            socket_connect_timeout=options.connect_timeout, socket_timeout=options.command_timeout,
            **LEAN_CONNECT_KWARGS
        )
        if options.tls:
            kwargs.update(
                ssl_cert_reqs="required" if options.validate_certs else "none",
                ssl_check_hostname=options.validate_certs,
                ssl_ca_certs=options.ca_certs, ssl_certfile=options.client_cert_file,
                ssl_keyfile=options.client_key_file,
            )
            self._conn = redis.SSLConnection(**kwargs)
        else:
            self._conn = redis.Connection(**kwargs)
        self.host = host
        self.port = port
        self._options = options
        # One reader for the connection's life: a read may take in replies of a pipeline sent after the one read.
        self._reader = None
        self._identity = None
        self._lanes: list = []

    def _connect(self) -> None:
        """Connect unless connected; redis-py's own message for a connect timeout names no node."""
        try:
            self._conn.connect()
        except RedisTimeoutError:
            raise RedisTimeoutError("%s:%d did not accept a connection within %s s (connect_timeout)"
                                    % (self.host, self.port, self._conn.socket_connect_timeout)) from None

    def call(self, *args):
        self._connect()
        try:
            self._conn.send_command(*args)
            return self._conn.read_response()
        except RedisTimeoutError:
            raise RedisTimeoutError("%s:%d did not answer in time" % (self.host, self.port)) from None

    def setslot_waits_for_replicas(self) -> bool:
        """Whether the node is a server whose CLUSTER SETSLOT, on a master with replicas, waits for them to take it
        before it applies (Valkey 8 and later): such a SETSLOT must not run inside MULTI, where Valkey 8.1 aborts on
        an assertion. Asked once, with no reply pending on the connection."""
        name, version = self._server()
        return name == "valkey" and version >= (8,)

    def drops_lost_keys_while_paused(self) -> bool:
        """Whether the node, a master whose writes are paused (CLIENT PAUSE WRITE), may delete the keys of a slot it
        learns it lost. Redis 7.0 and Valkey 8.1 do; Redis 8.0 aborts on an assertion when it has replicas (its pause
        forbids propagating anything, which Redis does from 7.2 on, so 7.2 and later are taken to fail alike)."""
        name, version = self._server()
        return (name == "valkey" and version >= (8, 1)) or (name == "redis" and version < (7, 2))

    def passes_on_lost_keys(self) -> bool:
        """Whether the node, a master that learns it lost a slot, passes the deletion of that slot's keys on to its
        replicas and its AOF. Redis before 7.2 deletes them in memory only: its replicas keep them, and a restart
        loads them again from the AOF (Redis 7.0.15 measured; Valkey 8.1.1 passes them on as UNLINK)."""
        name, version = self._server()
        return not (name == "redis" and version < (7, 2))

    def _server(self) -> tuple:
        """(server name, version as a tuple of numbers) from INFO server, asked once, with no reply pending."""
        if self._identity is None:
            name, version = server_identity(parse_info(self.call("INFO", "server").decode()))
            self._identity = (name, tuple(int(part) for part in (version or "0").split(".") if part.isdigit()))
        return self._identity

    def lanes(self, count: int) -> list:
        """This connection and count - 1 more to the same node, as the same user: opened once, closed with this one."""
        while len(self._lanes) < count - 1:
            self._lanes.append(NodeConnection(self.host, self.port, self._options))
        return [self] + self._lanes[:max(0, count - 1)]

    def pipeline(self, commands) -> list:
        """Send all commands in one write, read every reply; error replies are returned, not raised."""
        return self.receive(self.send(commands))

    def send(self, commands) -> int:
        """Send commands without waiting, in writes of about SEND_WORDS arguments; the number sent, whose replies
        receive() reads later. The node starts on the first write while the next ones are packed."""
        self._connect()
        sent, group, words = 0, [], 0
        for command in commands:
            if isinstance(command, Packed):
                if group:
                    self._conn.send_packed_command([pack_commands(group)])
                    sent, group, words = sent + len(group), [], 0
                if command.count:
                    self._conn.send_packed_command([command.data])
                sent += command.count
                continue
            group.append(command)
            words += len(command)
            if words >= SEND_WORDS:
                self._conn.send_packed_command([pack_commands(group)])
                sent, group, words = sent + len(group), [], 0
        if group:
            self._conn.send_packed_command([pack_commands(group)])
        return sent + len(group)

    def receive(self, count: int) -> list:
        """The next count replies, in order; error replies are returned, not raised."""
        if not count:
            return []
        sock = getattr(self._conn, "_sock", None)
        if hiredis is not None and sock is not None:
            return self._read_replies(sock, count)
        replies = []
        for _index in range(count):
            try:
                replies.append(self._conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies

    def _read_replies(self, sock, count: int) -> list:
        """count replies parsed by hiredis straight from the socket: redis-py's per-reply path costs more than the
        server's work for pipelines of small commands. Error replies come back as ResponseError, nested ones too."""
        if self._reader is None:
            self._reader = hiredis.Reader(protocolError=RedisConnectionError, replyError=ResponseError)
        reader = self._reader
        replies = []
        try:
            while len(replies) < count:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(READ_SIZE)
                    if not data:
                        raise RedisConnectionError("%s:%d closed the connection" % (self.host, self.port))
                    reader.feed(data)
                else:
                    replies.append(reply)
        except socket.timeout:
            self.close()
            raise RedisTimeoutError("%s:%d did not answer in time" % (self.host, self.port)) from None
        except OSError as exc:
            self.close()
            raise RedisConnectionError("%s:%d: %s" % (self.host, self.port, exc)) from None
        except RedisError:
            self.close()
            raise
        return replies

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._lanes = []
        self._conn.disconnect()
        self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def resolve_ip(host: str) -> str:
    """The IP address CLUSTER MEET needs (it takes no hostnames)."""
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        raise ClusterClientError("cannot resolve %s to an IP address: %s" % (host, exc)) from None


def fan_out(function, items, max_workers: int = MAX_PARALLEL) -> list:
    """function(item) for every item in parallel; results in the order of items."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        return list(pool.map(function, items))


AUTH_HINT = "authentication failed; check login_user and login_password (or REDIS_CLUSTER_USER / REDIS_CLUSTER_PASSWORD)"
PERMISSION_HINT = ("the ACL user (login_user) lacks a permission; grant the command named with ACL SETUSER on every node, "
                   "or log in as a user that has it")


# What a TLS mismatch looks like from the client's side, and what to change.
TLS_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED", "the node's certificate is not trusted; check ca_certs (or validate_certs)"),
    ("CERTIFICATE_REQUIRED", "the node asks for a client certificate; set client_cert_file and client_key_file"),
    # TLS 1.3 refuses a client certificate after the handshake: the client sees the alert, or only the closed
    # connection when it writes first.
    ("EOF occurred in violation of protocol", "the node closed the TLS connection, as it does when it asks for a "
                                              "client certificate; set client_cert_file and client_key_file"),
    ("WRONG_VERSION_NUMBER", "the node does not speak TLS on this port; check tls and login_port"),
    ("Connection reset by peer", "if the node listens with TLS only, set tls: true"),
)


# A TLS client on a port that speaks plain RESP gets no answer to its handshake: the node waits for a command.
TLS_TIMEOUT_HINT = "with tls: true, a node that does not speak TLS on this port does not answer either; check tls and the port"


def describe_error(exc: Exception, tls: bool = False) -> str:
    """The error's text with what to do about it, where the text alone would not say."""
    text = str(exc) or exc.__class__.__name__
    if tls and isinstance(exc, RedisTimeoutError):
        return "%s (%s)" % (text, TLS_TIMEOUT_HINT)
    if "cluster support disabled" in text:
        return "cluster mode is off on this node (cluster-enabled no): %s" % text
    # redis-py drops the NOPERM code from the text it raises; the collection's own connection keeps it.
    if "NOPERM" in text or "no permissions to" in text:
        return "%s: %s" % (PERMISSION_HINT, text)
    if isinstance(exc, AuthenticationError) or any(code in text for code in ("NOAUTH", "WRONGPASS")):
        return "%s: %s" % (AUTH_HINT, text)
    hints = [hint for marker, hint in TLS_HINTS if marker in text]
    return "%s (%s)" % (text, hints[0]) if hints else text


def observe_node(address, options: ConnectionOptions) -> NodeObservation:
    try:
        with NodeConnection(address.host, address.port, options) as conn:
            nodes, cluster_info, info = conn.pipeline(
                [("CLUSTER", "NODES"), ("CLUSTER", "INFO"), ("INFO",) + INFO_SECTIONS])
    except (RedisError, OSError) as exc:
        return NodeObservation(address=address, reachable=False, error=describe_error(exc, options.tls))
    for reply in (nodes, cluster_info, info):
        if isinstance(reply, Exception):
            return NodeObservation(address=address, reachable=False, error=describe_error(reply))
    return observation_from_replies(address, nodes.decode(), cluster_info.decode(), info.decode())


def observe_nodes(addresses, options: ConnectionOptions) -> ClusterState:
    """Read exactly these nodes, in parallel, into one ClusterState (no discovery)."""
    return ClusterState(observations=tuple(fan_out(lambda address: observe_node(address, options), addresses)))


def observe_cluster(seeds, options: ConnectionOptions) -> ClusterState:
    """Read the seeds, then every node their views name, in parallel rounds, into one ClusterState."""
    observations = observe_nodes(seeds, options).observations
    for _round in range(MAX_DISCOVERY_ROUNDS):
        pending = next_addresses(observations)
        if not pending:
            break
        observations += tuple(fan_out(lambda address: observe_node(address, options), pending))
    return ClusterState(observations=observations)


def require_usable(state: ClusterState) -> None:
    """Refuse a state that cannot be reported on: a node outside cluster mode, or nothing reachable."""
    off = [obs for obs in state.unreachable if "cluster mode is off" in obs.error]
    if off:
        raise ClusterClientError("%s: not in cluster mode; set cluster-enabled yes in redis.conf and restart it"
                                 % ", ".join(obs.address.key for obs in off))
    if not state.reachable:
        errors = "; ".join("%s: %s" % (obs.address.key, obs.error) for obs in state.observations)
        hint = "" if AUTH_HINT in errors else "; check login_host/login_port or nodes, and that redis-server runs there"
        raise ClusterClientError("no seed node could be reached (%s)%s" % (errors, hint))


def count_keys(state: ClusterState, options: ConnectionOptions, slots_to_count, replicas: bool = False) -> dict:
    """{node id: {slot: keys}} (non-zero counts only) for every reachable master (replica when replicas is set);
    slots_to_count(observation) names the slots to count on that node. One pipeline of CLUSTER COUNTKEYSINSLOT per
    node, nodes in parallel."""
    jobs = [(obs, list(slots_to_count(obs))) for obs in state.configured
            if obs.myself is not None and obs.myself.is_replica == replicas]

    def count(job):
        obs, slots = job
        try:
            with NodeConnection(obs.address.host, obs.address.port, options) as conn:
                replies = conn.pipeline([per_slot(slots, ("CLUSTER", "COUNTKEYSINSLOT", SLOT))])
        except (RedisError, OSError) as exc:
            raise ClusterClientError("counting keys on %s failed: %s" % (obs.address.key, describe_error(exc))) from None
        return obs.myself.id, {slot: n for slot, n in zip(slots, replies) if isinstance(n, int) and n > 0}

    return dict(fan_out(count, jobs))


def scan_foreign_keys(state: ClusterState, options: ConnectionOptions, master_counts=None) -> ClusterState:
    """Deep scan: count keys in every slot a master does not serve, and in every slot a replica's master does not
    (master_counts: the masters' counts of those slots, when made already)."""
    if master_counts is None:
        master_counts = count_keys(state, options, unserved_slots)
    replica_counts = count_keys(state, options, replica_stray_slots(state), replicas=True)
    return with_key_counts(state, {**master_counts, **replica_counts})
