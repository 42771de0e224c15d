# -*- coding: utf-8 -*-
# Copyright (c) redisops.cluster contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/benchmarks.md: each benchmark rewrites its own '## ' section and leaves the others alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")


def write_section(heading: str, section: str) -> None:
    """Replace the section that starts with heading (a '## ' line), or append it."""
    if os.path.exists(DOCS):
        with open(DOCS) as handle:
            text = handle.read()
    else:
        text = "# Benchmarks\n\nResults of `make bench`; each section is rewritten by its benchmark.\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    os.makedirs(os.path.dirname(DOCS), exist_ok=True)
    with open(DOCS, "w") as handle:
        handle.write(text.rstrip("\n") + "\n")


def versions(redis_server: str) -> str:
    """The software a figure was measured with: Redis, redis-py, ansible-core, Python."""
    import ansible.release  # pylint: disable=import-outside-toplevel
    import redis  # pylint: disable=import-outside-toplevel
    words = subprocess.run([redis_server, "--version"], stdout=subprocess.PIPE, text=True, check=False).stdout.split()
    server = next((word[2:] for word in words if word.startswith("v=")), "?")
    return "Redis %s, redis-py %s, ansible-core %s, Python %s" % (
        server, redis.__version__, ansible.release.__version__, platform.python_version())


def run_main(main) -> None:
    """A benchmark's entry point: exit with main()'s status; on Ctrl-C say that what it started is gone."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; what this process started has been stopped", file=sys.stderr)
        sys.exit(130)
