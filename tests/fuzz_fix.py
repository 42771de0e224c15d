# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""make fuzz: redis_cluster_fix against redis-cli --cluster fix on seeded broken states (tests/lib/breakage.py).

Each seed builds two twin clusters and breaks both with the same commands; redis_cluster_fix repairs one,
redis-cli --cluster fix the other, and the same checks judge both (redis-cli check clean, cluster_state:ok
everywhere, every surviving key readable from its owner with its value; for the module, a second run that
changes nothing). The table goes to docs/reliability.md; progress goes to stderr.

    .venv/bin/python tests/fuzz_fix.py                     # FUZZ_STATES seeds (300) from --first-seed (0)
    .venv/bin/python tests/fuzz_fix.py --seed 17 --verbose # one seed: breakage, plans, verdicts; docs untouched
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import redis  # noqa: E402
from breakage import BrokenState, StateSupply, Verdict, check_repair, run_ours, run_redis_cli_fix  # noqa: E402
from redis_harness import REDIS_SERVER  # noqa: E402

DOCS = os.path.join(ROOT, "docs", "reliability.md")
SECTION_START = "<!-- written by make fuzz: start -->"
SECTION_END = "<!-- written by make fuzz: end -->"
STATE_TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclasses.dataclass
class Outcome:
    seed: int
    breakage: list
    surviving_keys: int
    ours: Verdict
    cli: Verdict | None
    notes: list

    def failure_lines(self) -> list:
        lines = []
        for tool, verdict in (("ours", self.ours), ("redis-cli", self.cli)):
            if verdict is not None and not verdict.repaired:
                lines.append("seed %d, %s: %s" % (self.seed, tool, verdict.reasons[0] if verdict.reasons else "?"))
        return lines


class StateTimeout(Exception):
    pass


def _on_alarm(_signum, _frame):
    raise StateTimeout("the state took longer than %d s" % STATE_TIMEOUT_S)


def our_verdict(state: BrokenState, verbose: bool) -> Verdict:
    first, second = run_ours(state)
    if verbose:
        print("-- redis_cluster_fix plan:\n  " + "\n  ".join(first.get("plan") or ["(none)"]))
        if first.get("failed"):
            print("-- redis_cluster_fix failed: %s" % first.get("msg"))
        print("-- second run: changed=%s failed=%s plan=%s" % (
            second.get("changed"), second.get("failed"), second.get("plan")))
    verdict = check_repair(state, second_run=second)
    if first.get("failed"):
        message = " ".join(str(first.get("msg")).split())
        verdict = Verdict(False, verdict.keys_lost, ["fix failed: %s" % message] + verdict.reasons)
    return verdict


def cli_verdict(state: BrokenState, verbose: bool) -> Verdict:
    run = run_redis_cli_fix(state)
    if verbose:
        print("-- redis-cli --cluster fix (rc %s):\n%s" % (run.rc, ANSI.sub("", run.output)[-4000:]))
    verdict = check_repair(state)
    if run.rc != 0:
        verdict = Verdict(False, verdict.keys_lost, ["redis-cli: " + ANSI.sub("", run.reason())] + verdict.reasons)
    return verdict


def run_seed(seed: int, ours_states: StateSupply, twin_states: StateSupply | None, verbose: bool) -> Outcome:
    state = ours_states.state(seed)
    if verbose:
        print("== seed %d: %d masters, replicas of %s, %d keys written, %d survived the breaking" % (
            seed, state.layout.masters, list(state.layout.replica_of), len(state.layout.keys), len(state.snapshot)))
        print("-- breakage:\n  " + "\n  ".join(state.breakage))
        for note in state.notes:
            print("-- note: " + note)
    notes = list(state.notes)
    ours = our_verdict(state, verbose)
    cli = None
    if twin_states is not None:
        twin = twin_states.state(seed)
        if twin.breakage != state.breakage:
            notes.append("the twin's breakage diverged: " + "; ".join(
                line for line in twin.breakage if line not in state.breakage))
        if len(twin.snapshot) != len(state.snapshot):
            notes.append("the twin kept %d keys, ours %d" % (len(twin.snapshot), len(state.snapshot)))
        cli = cli_verdict(twin, verbose)
    outcome = Outcome(seed, state.breakage, len(state.snapshot), ours, cli, notes)
    if verbose:
        print("== ours: %s (keys lost %d)" % (ours.summary(), ours.keys_lost))
        if cli is not None:
            print("== redis-cli: %s (keys lost %d)" % (cli.summary(), cli.keys_lost))
        for note in notes:
            print("== note: " + note)
    return outcome


def timed_out(seed: int, exc: Exception, with_cli: bool) -> Outcome:
    """Both tools are charged with a state that ran out of time: which one took it is not known."""
    verdict = Verdict(False, 0, [str(exc)])
    return Outcome(seed, [], 0, verdict, verdict if with_cli else None, [str(exc)])


def versions() -> str:
    words = subprocess.run([REDIS_SERVER, "--version"], stdout=subprocess.PIPE, text=True, check=False).stdout.split()
    server = next((word[2:] for word in words if word.startswith("v=")), "?")
    cli = subprocess.run(["redis-cli", "--version"], stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True,
                            check=False).stdout.strip() or "?"
    return "collection at commit %s, redis-server %s, %s, redis-py %s" % (commit, server, cli, redis.__version__)


def command_kind(line: str) -> str | None:
    """The kind of a breakage line whose command took effect ("SETSLOT NODE", "MIGRATE", ...); None if refused."""
    words = line.split()
    if "killed" in words:
        return "replica killed"
    if not line.endswith("-> OK"):
        return None
    if words[1] == "MIGRATE":
        return "partial MIGRATE"
    return "SETSLOT " + words[4] if words[2] == "SETSLOT" else words[2]


def failure_kind(reason: str) -> str:
    """A reason with addresses, ids, numbers and the rerun advice taken out, so failures of one kind group together."""
    reason = reason.split("; nothing after this step was done")[0]
    reason = re.sub(r"^fix failed: ", "", reason)
    reason = re.sub(r"127\.0\.0\.1:\d+( \([0-9a-f]{8}\))?", "<node>", reason)
    reason = re.sub(r"<node>(, <node>)*", "<nodes>", reason)
    reason = re.sub(r"\d+(-\d+)?(,\d+(-\d+)?)*", "N", reason)
    return reason[:200]


def kinds_table(outcomes: list) -> list:
    """Per kind of command that took effect: in how many states, and how many of those each tool left broken."""
    counts = {}
    for outcome in outcomes:
        for kind in {command_kind(line) for line in outcome.breakage} - {None}:
            row = counts.setdefault(kind, [0, 0, 0])
            row[0] += 1
            row[1] += not outcome.ours.repaired
            row[2] += outcome.cli is not None and not outcome.cli.repaired
    lines = ["| command that took effect | states | not repaired by us | not repaired by redis-cli |",
             "| --- | ---: | ---: | ---: |"]
    return lines + ["| %s | %d | %d | %d |" % (kind, *row) for kind, row in sorted(counts.items())]


def failure_kinds(outcomes: list) -> list:
    """Our failures grouped by their first reason, with the kinds of command every state of the group holds."""
    groups = {}
    for outcome in outcomes:
        if not outcome.ours.repaired and outcome.ours.reasons:
            groups.setdefault(failure_kind(outcome.ours.reasons[0]), []).append(outcome)
    lines = []
    for kind, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        common = set.intersection(*({command_kind(line) for line in member.breakage} - {None} for member in members))
        lines.append("- %d state(s), e.g. seeds %s (all hold: %s): %s" % (
            len(members), ", ".join(str(member.seed) for member in members[:5]), ", ".join(sorted(common)) or "-",
            kind))
    return lines


def report(outcomes: list, elapsed: float) -> str:
    ours_ok = {o.seed for o in outcomes if o.ours.repaired}
    cli_ok = {o.seed for o in outcomes if o.cli is not None and o.cli.repaired}
    rows = [
        ("states", len(outcomes)),
        ("repaired by redis_cluster_fix", len(ours_ok)),
        ("repaired by redis-cli --cluster fix", len(cli_ok)),
        ("repaired only by redis_cluster_fix", len(ours_ok - cli_ok)),
        ("repaired only by redis-cli --cluster fix", len(cli_ok - ours_ok)),
        ("keys lost by redis_cluster_fix", sum(o.ours.keys_lost for o in outcomes)),
        ("keys lost by redis-cli --cluster fix", sum(o.cli.keys_lost for o in outcomes if o.cli is not None)),
        ("surviving keys over all states", sum(o.surviving_keys for o in outcomes)),
    ]
    failures = [line for outcome in outcomes for line in outcome.failure_lines()]
    notes = ["seed %d: %s" % (o.seed, note) for o in outcomes for note in o.notes]
    text = [
        "## Repair of seeded broken states",
        "",
        "Written by `make fuzz` (`tests/fuzz_fix.py`, `FUZZ_STATES` states, %d here): `redis_cluster_fix` and" % len(
            outcomes),
        "`redis-cli --cluster fix` on seeded broken clusters, each tool on its own twin of the state.",
        "",
        "### How the states are made",
        "",
        "`tests/lib/breakage.py` draws everything from the seed before a node is touched. A cluster of 3 to 5",
        "masters (a replica for about half of them) on fresh `redis-server` processes with",
        "`cluster-node-timeout` 2000 ms; 20 to 40 hash tags of 10 to 60 keys each plus 100 to 400 plain keys",
        "(strings, some hashes and sets). Then 2 to 7 steps of raw commands, addressed by node index, mostly on 1 to 4",
        "slots that hold keys: `CLUSTER SETSLOT IMPORTING / MIGRATING / NODE / STABLE` to one side, both sides,",
        "a bystander or every master; `CLUSTER DELSLOTS` of the slot and up to 3 neighbours; `CLUSTER ADDSLOTS`;",
        "a partial `MIGRATE` of the slot's keys to a node told to import it; a killed replica. Masters are never",
        "killed. Gossip then settles (CLUSTER NODES and cluster_state unchanged on every node for 1 s), and the",
        "keys that survived the breaking (Redis drops a slot's keys on a node that loses the slot) are the ones",
        "each repair must keep.",
        "",
        "A state counts as repaired when `redis-cli --cluster check` reports no `[ERR]` or `[WARNING]` and all",
        "16384 slots covered, every live node reports `cluster_state:ok` (within 5 s), and every surviving key",
        "is readable from its slot's owner with its value (`DEBUG DIGEST-VALUE`); for `redis_cluster_fix`, a",
        "second run must also report `changed: false`. A key lost is one that no live master holds any more",
        "with its value.",
        "",
        "### Results",
        "",
        "Run %s UTC, %.0f s, %s." % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), elapsed, versions()),
        "",
        "| | |",
        "| --- | ---: |",
    ] + ["| %s | %d |" % row for row in rows]
    text += ["", "By the commands that took effect in a state (a state counts once under each kind it holds):", ""]
    text += kinds_table(outcomes) + ["", "### Failures", ""]
    text += ["- " + line for line in failures] or ["None."]
    if any(not outcome.ours.repaired for outcome in outcomes):
        text += ["", "redis_cluster_fix's failures grouped by their first reason:", ""] + failure_kinds(outcomes)
    if notes:
        text += ["", "### Notes on the states", ""] + ["- " + note for note in notes]
    return "\n".join(text) + "\n"


def write_section(text: str) -> None:
    """Replace the fuzz section of docs/reliability.md, leaving the other suites' sections alone."""
    with open(DOCS) as handle:
        current = handle.read()
    start, end = current.index(SECTION_START), current.index(SECTION_END)
    with open(DOCS, "w") as handle:
        handle.write(current[:start + len(SECTION_START)] + "\n" + text + current[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="run this one seed (docs/reliability.md is left alone)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--states", type=int, default=int(os.environ.get("FUZZ_STATES", "300")))
    parser.add_argument("--verbose", action="store_true", help="print breakage, plans, redis-cli output, verdicts")
    parser.add_argument("--no-cli", action="store_true", help="run only redis_cluster_fix")
    parser.add_argument("--no-docs", action="store_true", help="print the report instead of writing it")
    options = parser.parse_args()
    first = options.first_seed
    seeds = [options.seed] if options.seed is not None else list(range(first, first + options.states))
    signal.signal(signal.SIGALRM, _on_alarm)
    started = time.monotonic()
    outcomes = []
    ours_states = StateSupply(seeds)
    twin_states = None if options.no_cli else StateSupply(seeds)
    try:
        for seed in seeds:
            begun = time.monotonic()
            signal.alarm(STATE_TIMEOUT_S)
            try:
                outcome = run_seed(seed, ours_states, twin_states, options.verbose)
            except StateTimeout as exc:
                outcome = timed_out(seed, exc, twin_states is not None)
            finally:
                signal.alarm(0)
            outcomes.append(outcome)
            print("seed %d: ours %s | redis-cli %s (%.1f s)" % (
                seed, outcome.ours.summary()[:150], outcome.cli.summary()[:150] if outcome.cli else "-",
                time.monotonic() - begun), file=sys.stderr, flush=True)
    finally:
        ours_states.close()
        if twin_states is not None:
            twin_states.close()
    text = report(outcomes, time.monotonic() - started)
    if options.seed is not None or options.no_docs:
        print(text)
    else:
        write_section(text)
        print("wrote %s" % DOCS, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
