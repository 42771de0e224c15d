# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster report: one self-contained HTML page from redis_cluster_facts and the reconcile history. Private to
redisops.cluster.

Pure code: no I/O. Every text that comes from Redis, the inventory or the history goes through html.escape; the page
loads nothing (inline CSS and SVG, no script, no URL).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math

from ._slots import SLOT_COUNT, count_slots, format_ranges, parse_slot_token
from ._topology import format_address

GRID = 128  # the slot map is GRID x GRID cells, one slot each, row by row
CELL = 4  # pixels per cell in the SVG's own coordinates
UNKNOWN = "-"
SEVERITIES = ("critical", "warning", "info")

CSS = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #d5d9e0; --bad: #c62828; --warn: #b26a00; --info: #1f5fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0;
       padding: 16px 24px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 8px 0 4px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.summary { display: flex; flex-wrap: wrap; gap: 8px; }
.stat { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 120px; }
.stat b { display: block; font-size: 18px; }
.state-ok { color: #2e7d32; } .state-degraded { color: var(--warn); } .state-failed { color: var(--bad); }
.zones { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.zone { border: 1px solid var(--line); border-radius: 8px; padding: 8px; flex: 1 1 300px; }
.rack { border-left: 3px solid var(--line); padding-left: 8px; margin: 6px 0; }
.host { border: 1px solid var(--line); border-radius: 6px; padding: 4px 8px; margin: 6px 0; }
.host.crowded { border: 2px solid var(--bad); }
.node { display: flex; gap: 6px; align-items: center; padding: 2px 0; font-family: ui-monospace, monospace; font-size: 12px; }
.node.master { font-weight: 600; }
.node.problem { background: #fde7e7; outline: 1px solid var(--bad); }
.node.down { color: var(--muted); text-decoration: line-through; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; border: 1px solid #0003; flex: none; }
.note { color: var(--bad); font-size: 12px; }
.columns { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.side { flex: 1 1 320px; }
.slotmap svg { display: block; width: 512px; max-width: 100%; height: auto; border: 1px solid var(--line); }
.legend { list-style: none; padding: 0; margin: 0; font-size: 12px; }
.legend li { display: flex; gap: 6px; align-items: center; margin: 2px 0; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, monospace; }
.bar { background: #eef0f4; width: 160px; height: 10px; border-radius: 2px; }
.bar span { display: block; height: 10px; border-radius: 2px; background: #5c7cba; }
.off { color: var(--bad); font-weight: 600; }
.findings { list-style: none; padding: 0; }
.finding { border-left: 4px solid var(--line); padding: 4px 8px; margin: 4px 0; }
.finding .sev { font-weight: 700; text-transform: uppercase; font-size: 11px; margin-right: 6px; }
.finding.critical { border-color: var(--bad); background: #fdecec; } .finding.critical .sev { color: var(--bad); }
.finding.warning { border-color: var(--warn); background: #fff4e0; } .finding.warning .sev { color: var(--warn); }
.finding.info { border-color: var(--info); background: #e8f0fb; } .finding.info .sev { color: var(--info); }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart svg { width: 420px; max-width: 100%; height: auto; border: 1px solid var(--line); }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  section { break-inside: avoid; }
  .zone, .host, .finding { break-inside: avoid; }
  .node.problem, .finding { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .slotmap svg, .swatch, .bar span { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


@dataclasses.dataclass(frozen=True)
class Node:
    """One node of the facts, with what the report shows of it."""

    id: str
    address: str
    role: str
    master_id: str | None
    zone: str
    rack: str
    host: str
    down: bool
    slots: tuple
    keys: int | None
    used_memory: int | None


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _node(raw: dict) -> Node:
    labels = raw.get("labels") or {}
    flags = set(raw.get("flags") or ())
    address = format_address(str(raw.get("host") or "?"), int(raw.get("port") or 0))
    return Node(
        id=str(raw.get("id") or ""), address=address, role=str(raw.get("role") or UNKNOWN),
        master_id=raw.get("master_id"), zone=str(labels.get("zone") or UNKNOWN), rack=str(labels.get("rack") or UNKNOWN),
        host=str(labels.get("hostname") or raw.get("hostname") or raw.get("host") or UNKNOWN),
        down=raw.get("reachable") is False or bool(flags & {"fail", "fail?", "noaddr"}),
        slots=tuple(tuple(pair) for pair in raw.get("slots") or ()), keys=raw.get("keys"),
        used_memory=raw.get("used_memory"),
    )


def colour(index: int) -> str:
    """A master's colour: hues a golden angle apart, so masters next to each other in the list get distant hues."""
    return "hsl(%d, 62%%, %d%%)" % (round(index * 137.508) % 360, 48 + 10 * (index % 3))


def slot_owners(masters) -> list:
    """Slot -> index of the master serving it in `masters`, or None."""
    owners = [None] * SLOT_COUNT
    for index, master in enumerate(masters):
        for first, last in master.slots:
            owners[first:last + 1] = [index] * (last - first + 1)
    return owners


def slot_runs(owners) -> list:
    """(first, last, owner) of each run of slots with one owner, cut at the end of each row of the grid."""
    runs = []
    for slot, owner in enumerate(owners):
        if runs and runs[-1][2] == owner and runs[-1][1] == slot - 1 and slot % GRID:
            runs[-1] = (runs[-1][0], slot, owner)
        else:
            runs.append((slot, slot, owner))
    return runs


def open_slots(raw_nodes, addresses: dict) -> list:
    """(slot, text) of every slot some node has open, as 'slot 7: migrating from A to B; importing into B from A'."""
    lines = {}
    for field, text in (("migrating", "migrating from %s to %s"), ("importing", "importing into %s from %s")):
        for raw in raw_nodes:
            here = addresses.get(raw.get("id"), UNKNOWN)
            for slot, other in raw.get(field) or ():
                lines.setdefault(int(slot), []).append(text % (here, addresses.get(other, other)))
    return [(slot, "slot %d: %s" % (slot, "; ".join(texts))) for slot, texts in sorted(lines.items())]


def _cell_rect(first: int, last: int, attributes: str) -> str:
    x, y = (first % GRID) * CELL, (first // GRID) * CELL
    return '<rect x="%d" y="%d" width="%d" height="%d" %s>' % (x, y, (last - first + 1) * CELL, CELL, attributes)


def _run_rect(run: tuple, masters) -> str:
    first, last, owner = run
    span = str(first) if first == last else "%d-%d" % (first, last)
    if owner is None:
        return _cell_rect(first, last, 'fill="url(#uncovered)"') + "<title>slots %s: not served</title></rect>" % span
    return _cell_rect(first, last, 'fill="%s"' % colour(owner)) + "<title>slots %s: %s</title></rect>" % (
        span, _e(masters[owner].address))


def slot_map_svg(masters, open_slot_numbers) -> str:
    """The 16384 slots as a GRID x GRID picture: one colour per master, hatched when no master serves them, a black
    ring around each open slot."""
    size = GRID * CELL
    rects = [_run_rect(run, masters) for run in slot_runs(slot_owners(masters))]
    # One cell is too small to see: an open slot gets a ring around it.
    frames = ['<circle cx="%.1f" cy="%.1f" r="7" fill="none" stroke="#000" stroke-width="2.5">'
              '<title>slot %d is open</title></circle>' % ((slot % GRID + 0.5) * CELL, (slot // GRID + 0.5) * CELL, slot)
              for slot in open_slot_numbers]
    pattern = ('<defs><pattern id="uncovered" width="4" height="4" patternUnits="userSpaceOnUse">'
               '<rect width="4" height="4" fill="#fff"/><path d="M0 4L4 0" stroke="#c62828" stroke-width="1"/>'
               '</pattern></defs>')
    return ('<svg viewBox="0 0 %d %d" role="img" shape-rendering="crispEdges" '
            'aria-label="slot map, %d slots per row">%s%s%s</svg>' % (size, size, GRID, pattern, "".join(rects),
                                                                      "".join(frames)))


def _swatch(fill: str) -> str:
    return '<span class="swatch" style="background:%s"></span>' % fill


def _legend(masters, uncovered: int, opened: int) -> str:
    items = ["<li>%s%s %d slots</li>" % (_swatch(colour(index)), _e(master.address), count_slots(master.slots)) for index, master in enumerate(masters)]
    items.append('<li><span class="swatch" style="background:repeating-linear-gradient(45deg,#fff 0 2px,#c62828 2px 3px)">'
                 "</span>not served: %d slots</li>" % uncovered)
    items.append('<li><span class="swatch" style="background:#fff;border:2px solid #000;border-radius:50%%"></span>open: %d slots</li>'
                 % opened)
    return '<ul class="legend">%s</ul>' % "".join(items)


def slot_section(masters, raw_nodes, addresses: dict) -> str:
    opened = open_slots(raw_nodes, addresses)
    uncovered = slot_owners(masters).count(None)
    opened_list = "".join('<li class="finding warning open-slot">%s</li>' % _e(text) for _slot, text in opened)
    return ('<section><h2>Slots</h2><div class="columns"><div class="slotmap">%s</div><div class="side">%s'
            '<h3>Open slots</h3><ul class="findings open-slots">%s</ul></div></div>'
            '<p class="sub">128 slots per row, slot 0 at the top left. Hover a cell for its owner.</p></section>'
            % (slot_map_svg(masters, [slot for slot, _text in opened]), _legend(masters, uncovered, len(opened)),
               opened_list or "<li>none</li>"))


def crowded_hosts(nodes) -> dict:
    """Host -> masters on it, for hosts that hold more masters than an even spread over the hosts gives them."""
    hosts = {node.host for node in nodes}
    masters = [node for node in nodes if node.role == "master" and node.slots]
    if not hosts or not masters:
        return {}
    fair = math.ceil(len(masters) / len(hosts))
    counts = {}
    for master in masters:
        counts[master.host] = counts.get(master.host, 0) + 1
    return {host: count for host, count in counts.items() if count > fair}


def _node_line(node: Node, index_of: dict, addresses: dict, flagged: set) -> str:
    classes = ["node", "master" if node.role == "master" else "replica"]
    if node.id in flagged:
        classes.append("problem")
    if node.down:
        classes.append("down")
    owner = node.id if node.role == "master" else node.master_id
    fill = colour(index_of[owner]) if owner in index_of else "#bbb"
    what = ("master, %d slots" % count_slots(node.slots) if node.role == "master"
            else "replica of %s" % addresses.get(node.master_id, UNKNOWN))
    state = " (down)" if node.down else ""
    return '<div class="%s">%s <span>%s</span> <span>%s%s</span></div>' % (
        " ".join(classes), _swatch(fill), _e(node.address), _e(what), state)


def _host_block(host: str, nodes, context: tuple) -> str:
    index_of, addresses, flagged, crowded = context
    ordered = sorted(nodes, key=lambda node: (node.role != "master", node.address))
    note = ('<div class="note">%d masters on this host: one failure here takes them all</div>' % crowded[host]
            if host in crowded else "")
    return '<div class="host%s"><h3>%s</h3>%s%s</div>' % (
        " crowded" if host in crowded else "", _e(host),
        "".join(_node_line(node, index_of, addresses, flagged) for node in ordered), note)


def _grouped(nodes, attribute: str) -> dict:
    groups = {}
    for node in nodes:
        groups.setdefault(getattr(node, attribute), []).append(node)
    return dict(sorted(groups.items()))


def topology_section(nodes, masters, findings) -> str:
    index_of = {master.id: index for index, master in enumerate(masters)}
    addresses = {node.id: node.address for node in nodes}
    flagged = {node_id for finding in findings if finding.get("kind") == "anti_affinity"
               for node_id in finding.get("nodes") or ()}
    context = (index_of, addresses, flagged, crowded_hosts(nodes))
    zones = []
    for zone, in_zone in _grouped(nodes, "zone").items():
        racks = []
        for rack, in_rack in _grouped(in_zone, "rack").items():
            hosts = "".join(_host_block(host, on_host, context) for host, on_host in _grouped(in_rack, "host").items())
            heading = "" if rack == UNKNOWN else '<div class="sub">rack %s</div>' % _e(rack)
            racks.append('<div class="rack">%s%s</div>' % (heading, hosts))
        zones.append('<div class="zone"><h3>zone %s</h3>%s</div>' % (_e(zone), "".join(racks)))
    return ('<section><h2>Topology</h2><p class="sub">Highlighted: a replica that shares a zone, rack or host with '
            'its master (anti_affinity), a host holding more masters than an even spread. Struck out: down.</p>'
            '<div class="zones">%s</div></section>' % "".join(zones))


def _bar(value: float, largest: float) -> str:
    width = 0 if largest <= 0 else round(100 * value / largest)
    return '<div class="bar"><span style="width:%d%%"></span></div>' % width


def _deviation(count: float, even: float, threshold: float | None = None) -> str:
    deviation = (count - even) / even * 100 if even else 0.0
    beyond = threshold is not None and abs(deviation) > threshold
    return '<td class="num%s">%+.1f%%</td>' % (" off" if beyond else "", deviation)


def balance_section(masters, threshold: float) -> str:
    serving = [master for master in masters if master.slots]
    counts = [count_slots(master.slots) for master in serving]
    keys = [master.keys or 0 for master in serving]
    even, even_keys = (SLOT_COUNT / len(serving), sum(keys) / len(serving)) if serving else (0.0, 0.0)
    rows = "".join(
        '<tr><td class="mono">%s %s</td><td class="num">%d</td>%s<td>%s</td><td class="num">%s</td>%s<td>%s</td></tr>' % (
            _swatch(colour(masters.index(master))), _e(master.address), count, _deviation(count, even, threshold),
            _bar(count, max(counts)), UNKNOWN if master.keys is None else master.keys,
            _deviation(master.keys or 0, even_keys), _bar(master.keys or 0, max(keys)))
        for master, count in zip(serving, counts))
    return ('<section><h2>Balance</h2><p class="sub">Even share: %.1f slots and %.1f keys per master; deviations '
            'of slots beyond %.1f%% in red.</p><table><tr><th>master</th><th class="num">slots</th><th class="num">vs even</th>'
            '<th></th><th class="num">keys</th><th class="num">vs even</th><th></th></tr>%s</table></section>'
            % (even, even_keys, threshold, rows))


def _megabytes(used: int | None) -> str:
    return UNKNOWN if used is None else "%.1f MiB" % (used / 1048576.0)


def memory_section(nodes) -> str:
    largest = max([node.used_memory or 0 for node in nodes] or [0])
    rows = "".join('<tr><td class="mono">%s</td><td>%s</td><td class="num">%s</td><td>%s</td></tr>' % (
        _e(node.address), _e(node.role), _megabytes(node.used_memory), _bar(node.used_memory or 0, largest))
        for node in sorted(nodes, key=lambda node: node.address))
    return ('<section><h2>Memory</h2><table><tr><th>node</th><th>role</th><th class="num">used_memory</th><th></th>'
            '</tr>%s</table></section>' % rows)


def _finding_item(finding: dict) -> str:
    severity = str(finding.get("severity") or "info")
    css = severity if severity in SEVERITIES else "info"
    slots = finding.get("slots") or ()
    where = " (slots %s)" % _e(format_ranges(slots)) if slots else ""
    return '<li class="finding %s"><span class="sev">%s</span> <b>%s</b>: %s%s</li>' % (
        css, _e(severity), _e(finding.get("kind")), _e(finding.get("message")), where)


def findings_section(findings) -> str:
    items = "".join(_finding_item(finding) for finding in findings)
    return '<section><h2>Findings</h2><ul class="findings">%s</ul></section>' % (items or "<li>no findings</li>")


def parse_history(text: str, limit: int = 500) -> list:
    """The last `limit` readable records of a JSON Lines history; a line that is not a JSON object is skipped."""
    records = []
    for line in (text or "").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records[-limit:] if limit > 0 else records


def _ranges_of_text(text) -> list:
    ranges = []
    for token in str(text or "").split(","):
        try:
            ranges.append(parse_slot_token(token.strip()))
        except ValueError:
            continue
    return ranges


def history_point(record: dict) -> dict:
    """One history record as the numbers the charts draw: slots covered and keys on the masters, and its problems
    (instances with an error, refused hosts, decisions)."""
    nodes = [node for node in record.get("nodes") or () if isinstance(node, dict)]
    masters = [node for node in nodes if node.get("role") == "master"]
    covered = bytearray(SLOT_COUNT)
    for master in masters:
        for first, last in _ranges_of_text(master.get("slots")):
            covered[first:last + 1] = b"\x01" * (last - first + 1)
    problems = (sum(1 for node in nodes if node.get("error")) + len(record.get("refused") or ())
                + len(record.get("decisions") or ()))
    return {"at": str(record.get("collected_at") or UNKNOWN), "slots": covered.count(1),
            "keys": sum(int(master.get("keys") or 0) for master in masters), "problems": problems}


def line_chart(title: str, times: list, values: list) -> str:
    """A small SVG line chart of values over the records (evenly spaced), with its first and last time."""
    width, height, pad = 420, 140, 28
    if len(values) == 1:  # one record: a flat line across the chart rather than a point no polyline draws
        times, values = times * 2, values * 2
    top = max(values) or 1
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join("%.1f,%.1f" % (pad + index * step, height - pad - value / top * (height - 2 * pad))
                      for index, value in enumerate(values))
    return ('<div class="chart"><h3>%s</h3><svg viewBox="0 0 %d %d" role="img">'
            '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>'
            '<text x="%d" y="%d" font-size="10" fill="#555">%s</text>'
            '<text x="%d" y="%d" font-size="10" fill="#555">0</text>'
            '<polyline fill="none" stroke="#1f5fa8" stroke-width="2" points="%s"/>'
            '<text x="%d" y="%d" font-size="10" fill="#555">%s</text>'
            '<text x="%d" y="%d" font-size="10" fill="#555" text-anchor="end">%s</text></svg></div>'
            % (_e(title), width, height, pad, height - pad, width - pad, height - pad, 2, pad - 6, top, 2, height - pad,
               points, pad, height - 8, _e(times[0]), width - pad, height - 8, _e(times[-1])))


def history_section(records, source: str) -> str:
    points = [history_point(record) for record in records]
    if not points:
        return ('<section><h2>History</h2><p class="sub">No reconcile history at %s: redisops.cluster.reconcile '
                'writes one record per run.</p></section>' % _e(source or UNKNOWN))
    times = [point["at"] for point in points]
    charts = [line_chart(title, times, [point[field] for point in points]) for title, field in (
        ("slots covered", "slots"), ("keys", "keys"), ("problems (errors, refusals, decisions)", "problems"))]
    return ('<section><h2>History</h2><p class="sub">%d reconcile records from %s</p><div class="charts">%s</div>'
            '</section>' % (len(points), _e(source), "".join(charts)))


def _summary(facts: dict) -> str:
    state = str(facts.get("state") or UNKNOWN)
    stats = (("state", '<b class="state-%s">%s</b>' % (_e(state), _e(state))),
             ("slots covered", "<b>%s / %d</b>" % (_e(facts.get("slots_covered")), SLOT_COUNT)),
             ("masters", "<b>%s</b>" % _e(facts.get("masters"))), ("replicas", "<b>%s</b>" % _e(facts.get("replicas"))),
             ("reachable nodes", "<b>%s</b>" % _e(facts.get("reachable_nodes"))),
             ("largest imbalance", "<b>%.1f%%</b>" % float(facts.get("imbalance_pct") or 0)))
    return '<div class="summary">%s</div>' % "".join('<div class="stat">%s%s</div>' % (value, label)
                                                     for label, value in stats)


def render_report(facts: dict, history=(), cluster: str = "redis_cluster", generated_at: str = "",
                  history_source: str = "", imbalance_threshold: float = 2.0) -> str:
    """The whole page: summary, topology, slot map, balance, memory, findings and history."""
    raw_nodes = [raw for raw in facts.get("nodes") or () if isinstance(raw, dict)]
    nodes = [_node(raw) for raw in raw_nodes]
    masters = sorted((node for node in nodes if node.role == "master"), key=lambda node: node.address)
    findings = [finding for finding in facts.get("findings") or () if isinstance(finding, dict)]
    addresses = {node.id: node.address for node in nodes}
    body = "".join((
        "<header><h1>Redis Cluster %s</h1><p class=\"sub\">observed %s by redisops.cluster.report</p>%s</header>"
        % (_e(cluster), _e(generated_at or UNKNOWN), _summary(facts)),
        findings_section(findings), topology_section(nodes, masters, findings),
        slot_section(masters, raw_nodes, addresses), balance_section(masters, imbalance_threshold),
        memory_section(nodes), history_section(list(history), history_source),
    ))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Redis Cluster %s</title><style>%s</style></head><body>%s"
            "</body></html>\n" % (_e(cluster), CSS, body))
