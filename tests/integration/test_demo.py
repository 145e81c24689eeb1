# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""`make demo`'s script, end to end, twice, against the Debian package's Orthanc (destructive: it runs the
package's init script), so that a change of format can never break the README's first command silently."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request

import pytest

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts', 'demo.sh')

ORTHANC = 'http://127.0.0.1:8042'


def instances():
    with urllib.request.urlopen(ORTHANC + '/instances', timeout=30) as response:
        return json.load(response)


def demo_env(tmp_path):
    return dict(os.environ, ORTHANC_OPS_REPOSITORY=str(tmp_path / 'repository'),
                ORTHANC_OPS_REPORT_DIR=str(tmp_path / 'report'),
                ORTHANC_OPS_COLLECTIONS_PATH=str(tmp_path / 'collections'),
                ORTHANC_OPS_BACKUP_KEY_FILE=str(tmp_path / 'backup.key'))


def run_demo(collections_root, tmp_path):
    env = demo_env(tmp_path)
    done = subprocess.run(['bash', DEMO, collections_root], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.split('== Summary\n', 1)[1]
    return dict(line.split(None, 1) for line in summary.splitlines())


@pytest.mark.destructive
def test_demo_backs_up_twice_and_says_how_to_restore(packaged_orthanc, collections_root, tmp_path):
    first = run_demo(collections_root, tmp_path)
    backup = first['Backup'].split()[0]
    assert os.path.isfile(os.path.join(backup, 'manifest.json'))
    assert first['Holds'] == '3 patients, 6 studies, 12 series, 36 instances'
    assert re.match(r'^\d+, \d+ bytes: \d+ bytes copied, 0 linked from the previous backup$', first['Files'])
    assert first['Storage'] == '36 files, 0 of them linked from the previous backup'
    assert re.match(r'^paused for 0\.\d{3} s \(mode freeze\)$', first['Orthanc'])
    assert first['Report'] == str(tmp_path / 'report' / 'report.html') and os.path.isfile(first['Report'])
    key = tmp_path / 'backup.key'
    assert first['Signed'] == 'yes, with the backup key in %s' % key and os.stat(key).st_mode & 0o777 == 0o600
    assert first['Restore'].endswith('-e orthanc_restore_backup=' + os.path.basename(backup))

    second = run_demo(collections_root, tmp_path)
    assert second['Backup'].split()[0] != backup and second['Holds'] == first['Holds']
    assert second['Storage'] == 'all 36 files linked from the previous backup (nothing changed since)'

    # The command the summary gives restores that backup: an instance deleted since is back.
    lost = instances()[0]
    urllib.request.urlopen(urllib.request.Request(ORTHANC + '/instances/' + lost, method='DELETE'), timeout=30).close()
    assert len(instances()) == 35
    restore = subprocess.run(second['Restore'], shell=True, env=demo_env(tmp_path), capture_output=True, text=True,
                             timeout=600, check=False)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert 'failed=0' in restore.stdout and lost in instances() and len(instances()) == 36
