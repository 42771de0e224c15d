#!/usr/bin/env bash
# Run ansible-lint (production profile, settings in .ansible-lint) over this collection.
#
# Usage: tools/lint.sh [extra ansible-lint options or paths...]
# Exits non-zero on any finding (.ansible-lint sets strict: warnings count too).
#
# The collection is made visible as ansible_collections/<namespace>/<name> through a
# symlink in a temporary collections path, so that its own modules resolve by FQCN
# (e.g. in tests/integration playbooks) while findings keep the repository's paths.
#
# Environment: LINT_VENV  virtualenv holding ansible-lint (default: <repo>/.venv)

set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LINT_VENV:-$repo_root/.venv}"

[[ -x $venv/bin/ansible-lint ]] || {
    echo "lint.sh: no ansible-lint in $venv (create the venv first, or set LINT_VENV)" >&2
    exit 2
}

read -r namespace name < <(cd "$repo_root" && "$venv/bin/python" -c '
import yaml
with open("galaxy.yml") as f:
    g = yaml.safe_load(f)
print(g["namespace"], g["name"])') || {
    echo "lint.sh: cannot read namespace and name from galaxy.yml" >&2
    exit 2
}

work="$(mktemp -d "${TMPDIR:-/tmp}/lint-$namespace-$name.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ansible_collections/$namespace"
ln -s "$repo_root" "$work/ansible_collections/$namespace/$name"

export ANSIBLE_COLLECTIONS_PATH="$work:${ANSIBLE_COLLECTIONS_PATH:-$HOME/.ansible/collections:/usr/share/ansible/collections}"
export PATH="$venv/bin:$PATH"

cd "$repo_root"
status=0
ansible-lint --offline --profile production "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "lint.sh: ansible-lint FAILED (exit status $status)" >&2
fi
exit "$status"
