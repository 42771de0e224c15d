#!/usr/bin/env python
# Copyright: redisops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the get-pip script that ansible-test downloads.

ansible-test (ansible_test/_util/target/setup/requirements.py, bootstrap()) wants
~/.ansible/test/cache/get_pip_<pip version with dots as underscores>.py, e.g.
get_pip_24_2.py for pip 24.2, and downloads it from a host these machines cannot
reach.  quiet_pip.py then runs it with runpy as __main__, inside the new virtual
environment's python, as:

    <venv>/bin/python quiet_pip.py --disable-pip-version-check pip==24.2 \
        --no-setuptools --no-wheel        (with GET_PIP=<this file>)

This stand-in bootstraps pip from the interpreter's bundled ensurepip wheel, then
upgrades it to what ansible-test asked for from the configured package indexes.

Each step runs in its own process: ensurepip sets PIP_CONFIG_FILE=/dev/null in
the environment of the process it runs in, which would hide this machine's pip
configuration (its local indexes) from a pip started afterwards by that process.
"""

import importlib.util
import subprocess
import sys

# Marker that tools/sanity.sh looks for: a cached file holding it is this
# stand-in (and may be refreshed); any other file is left alone.
STAND_IN_MARKER = 'redisops-get-pip-stand-in'

# get-pip.py options that `pip install` does not know.
GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def run(command):
    """Run a command in a child process; exit with its status if it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    status = subprocess.call(command)

    if status != 0:
        sys.stderr.write('get_pip stand-in: command failed with status %d: %s\n' % (status, ' '.join(command)))
        sys.exit(status)


def has_module(name):
    """Return True if the named top-level module can be imported by this interpreter."""
    return importlib.util.find_spec(name) is not None


def main(args):
    """Bootstrap pip, then install the requested packages with it."""
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY_OPTIONS]
    had_setuptools = has_module('setuptools')

    # ensurepip installs the pip wheel bundled with this Python (and setuptools, before Python 3.12).
    run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])

    if any(not arg.startswith('-') for arg in pip_args):  # something to install
        run([sys.executable, '-m', 'pip', 'install', '--upgrade'] + pip_args)

    # Honour --no-setuptools as get-pip does: don't leave behind a setuptools that only ensurepip brought in.
    if '--no-setuptools' in args and not had_setuptools:
        importlib.invalidate_caches()

        if has_module('setuptools'):
            run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--disable-pip-version-check', 'setuptools'])


if __name__ == '__main__':
    main(sys.argv[1:])
