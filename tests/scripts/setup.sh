#!/usr/bin/env bash
# Install what the tests and the demo need on a Debian 12 machine: Debian packages
# (Orthanc and its database plugins, the database servers and clients, rsync, sshd, Chromium
# for the report screenshot, Podman for containers, restic and rclone for off-site copies,
# Prometheus for promtool, which checks the alerting rules; no service is started) and a
# Python virtual environment with the pinned requirements (moto's S3-compatible server among them), and
# a second one with the oldest ansible-core the collection claims, for its sanity tests. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
venv=${ORTHANC_OPS_VENV:-$HOME/.cache/orthanc-ops/venv}

packages=(orthanc orthanc-postgresql orthanc-mysql postgresql mariadb-server postgresql-client
          mariadb-client rsync sqlite3 openssh-server openssh-client python3 python3-psycopg2 python3-pymysql
          python3-apt make shellcheck chromium podman runc mmdebstrap restic rclone prometheus)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  # Package scripts must not start services on their own: the tests start what they need.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# The newest Python available: pyenv's 3.13 or 3.12 (their shims do not work outside pyenv).
python=""
for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3 \
                 "$(command -v python3.13 || true)" "$(command -v python3.12 || true)"; do
  if [ -x "$candidate" ]; then python=$candidate; break; fi
done
[ -n "$python" ] || { echo "setup: needs Python 3.12 or 3.13 (pyenv)"; exit 1; }

# make_venv FOLDER PYTHON REQUIREMENTS: (re)create FOLDER when REQUIREMENTS changed since it was made.
make_venv() {
  local folder=$1 interpreter=$2 requirements=$3
  if ! cmp -s "$requirements" "$folder/.requirements" 2>/dev/null; then
    echo "setup: creating $folder with $interpreter" >&2
    rm -rf "$folder"
    "$interpreter" -m venv "$folder"
    "$folder/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$folder/.requirements"
  fi
}
make_venv "$venv" "$python" "$here/tests/requirements.txt"
make_venv "$venv-newest" "$python" "$here/tests/requirements-newest.txt"
# ansible-core 2.16 runs on Python 3.10 to 3.12.
oldest_python=""
for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python3 "$(command -v python3.12 || true)"; do
  if [ -x "$candidate" ]; then oldest_python=$candidate; break; fi
done
[ -n "$oldest_python" ] || { echo "setup: needs Python 3.12 (pyenv) for ansible-core 2.16"; exit 1; }
make_venv "$venv-oldest" "$oldest_python" "$here/tests/requirements-oldest.txt"
echo "$venv"
