#!/usr/bin/env bash
# The main job on one Debian 12 machine: install the collection, make sure the packaged
# Orthanc (SQLite) runs and holds a few studies, back it up with playbooks/backup.yml on
# localhost, and show where the backup is and what it holds.
set -euo pipefail
tree_root=$1
tree="$tree_root/ansible_collections/orthanc_ops/backup"
collections=${ORTHANC_OPS_COLLECTIONS_PATH:-$HOME/.cache/orthanc-ops/collections}
repository=${ORTHANC_OPS_REPOSITORY:-/var/backups/orthanc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== Installing the collection with ansible-galaxy"
(cd "$tree" && ansible-galaxy collection build --force --output-path "$work" >/dev/null)
ANSIBLE_COLLECTIONS_PATH=$collections ansible-galaxy collection install --force -p "$collections" "$work"/orthanc_ops-backup-*.tar.gz >/dev/null
export ANSIBLE_COLLECTIONS_PATH=$collections

answers() { python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8042/system", timeout=2)' 2>/dev/null; }
if ! answers; then
  echo "== Starting the packaged Orthanc"
  if [ -d /run/systemd/system ]; then systemctl start orthanc; else /etc/init.d/orthanc start >/dev/null; fi
  for _ in $(seq 300); do answers && break; sleep 0.1; done
  answers || { echo "Orthanc did not start; see /var/log/orthanc"; exit 1; }
fi

count=$(python3 -c 'import json, urllib.request; print(len(json.load(urllib.request.urlopen("http://127.0.0.1:8042/instances"))))')
if [ "$count" = 0 ]; then
  echo "== Seeding sample studies (synthetic DICOM)"
  PYTHONPATH="$tree/tests/integration:$tree_root" python - <<'PY'
import urllib.request
from harness import make_instances
for data in make_instances(patients=3, studies=2, series=2, instances=3):
    urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8042/instances', data=data, method='POST')).close()
PY
fi

report_dir=${ORTHANC_OPS_REPORT_DIR:-/var/tmp/orthanc-backup-report}
echo "== Backing up with orthanc_ops.backup.backup"
ansible-playbook orthanc_ops.backup.backup -i localhost, -c local \
  -e ansible_python_interpreter=/usr/bin/python3 -e orthanc_backup_repository="$repository" \
  -e orthanc_backup_instance=localhost -e orthanc_backup_report_dir="$report_dir"

latest=$(find "$repository/localhost" -mindepth 1 -maxdepth 1 -type d -name "2*Z" | sort | tail -n 1)
echo "== Summary"
python3 - "$latest" "$report_dir" "$repository" "$collections" "${ORTHANC_OPS_BACKUP_KEY_FILE:-$HOME/.orthanc-ops/backup.key}" <<'PY'
import json
import os
import sys

backup, report_dir, repository, collections, key_file = sys.argv[1:]
with open(os.path.join(backup, 'manifest.json')) as handle:
    manifest = json.load(handle)
# Unchanged storage files are hard links shared with the previous backup.
stored = [os.stat(os.path.join(folder, name)) for folder, dummy, names in os.walk(os.path.join(backup, 'storage'))
          for name in names]
shared = sum(1 for stat in stored if stat.st_nlink > 1)
timings = manifest['timings']
print('Backup     %s (%s, Orthanc %s, %s index, %s storage)' % (backup, manifest['status'], manifest['orthanc_version'],
                                                               manifest['index_backend'], manifest['storage_backend']))
print('Holds      %(patients)d patients, %(studies)d studies, %(series)d series, %(instances)d instances' % manifest['counts'])
print('Files      %d, %d bytes: %d bytes copied, %d linked from the previous backup' % (
    manifest['files'], manifest['bytes'], manifest['bytes_copied'], manifest['bytes_linked']))
if not stored:
    print('Storage    empty')
elif shared == len(stored):
    print('Storage    all %d files linked from the previous backup (nothing changed since)' % len(stored))
else:
    print('Storage    %d files, %d of them linked from the previous backup' % (len(stored), shared))
outage = {'freeze': 'paused for %.3f s' % timings['pause_seconds'],
          'cold': 'stopped for %.3f s' % timings['downtime_seconds']}
print('Orthanc    %s (mode %s)' % (outage.get(manifest['mode'], 'kept serving'), manifest['mode']))
print('Signed     %s' % ('yes, with the backup key in %s' % key_file if 'authentication' in manifest else 'no'))
print('Report     %s' % os.path.join(report_dir, 'report.html'))
print('Restore    ANSIBLE_COLLECTIONS_PATH=%s ansible-playbook orthanc_ops.backup.restore -i localhost, -c local '
      '-e orthanc_backup_repository=%s -e orthanc_backup_instance=localhost -e orthanc_restore_backup=%s'
      % (collections, repository, manifest['backup_id']))
PY
