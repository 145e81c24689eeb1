#!/usr/bin/env bash
# Run ansible-test (sanity, units) here without Docker: in a real collection tree, with
# python3.X on PATH, and with a get-pip stand-in since its usual download host is unreachable.
set -euo pipefail
venv=$1; tree=$2; shift 2
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for python in "$HOME"/.pyenv/versions/3.1[1-4]*/bin/python3.1[1-4]; do
  [ -x "$python" ] && ln -sf "$python" "$bin/$(basename "$python")"
done
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
for version in 25.2 24.2 23.1.2; do
  cat > "$cache/get_pip_${version//./_}.py" <<'PY'
import subprocess, sys
subprocess.check_call([sys.executable, '-m', 'ensurepip'], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q', '--upgrade'] + args)
PY
done
cd "$tree"
PATH="$bin:$venv/bin:$PATH" "$venv/bin/ansible-test" "$@"
