# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Back up a real SQLite Orthanc, wipe it, restore it: every instance and MD5 comes back."""

from __future__ import annotations

import os

import pytest

from harness import make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

LAYOUTS = {
    'plain': {},
    'compressed': {'compression': True},
    'config-folder': {'layout': 'folder'},
    'relative-paths': {'layout': 'folder', 'relative': True, 'separate_index': True},
}


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_backup_wipe_restore(layout, make_orthanc, ansible, repository):
    orthanc = make_orthanc(**LAYOUTS[layout])
    orthanc.upload(make_instances())
    before = orthanc.md5s()
    assert len(before) == 24

    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    assert backup['changed'] and backup['index_backend'] == 'sqlite' and backup['storage_backend'] == 'filesystem'
    assert backup['counts']['instances'] == 24 and backup['bytes_linked'] == 0
    # The default for SQLite: frozen for milliseconds, never stopped.
    assert backup['downtime_seconds'] == 0 and 0 < backup['pause_seconds'] < 1 and orthanc.answers()
    assert sorted(os.listdir(os.path.join(repository, 'pacs'))) == ['.lock', '.runs.json', backup['backup_id']]
    assert os.stat(backup['path']).st_mode & 0o777 == 0o700

    # Files that change after the backup must not change the backup (no shared inodes with live data).
    orthanc.upload(make_instances(patients=1, studies=1, series=1, instances=1))
    orthanc.wipe()
    orthanc.start()
    assert orthanc.instances() == []

    source = {'src': backup['path']} if layout == 'relative-paths' else {'repository': repository, 'instance': 'pacs'}
    plan, rc, output = ansible.run('orthanc_restore', orthanc.module_params(**source), check=True)
    assert rc == 0, output
    assert plan['plan']['backup_id'] == backup['backup_id'] and plan['plan']['orthanc_running'] is True
    assert orthanc.instances() == []

    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(**source))
    assert rc == 0, output
    assert restore['backup_id'] == backup['backup_id']
    assert restore['statistics']['CountInstances'] == 24
    assert orthanc.md5s() == before


def test_restore_config_puts_the_backed_up_configuration_back(make_orthanc, ansible, repository):
    orthanc = make_orthanc(layout='folder')
    orthanc.upload(make_instances(patients=1))
    before = orthanc.md5s()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    with open(os.path.join(orthanc.config, 'extra.json'), 'w') as handle:
        handle.write('{"DicomAet": "CHANGED"}')
    orthanc.stop()
    orthanc.start()
    assert orthanc.api('GET', '/system')['DicomAet'] == 'CHANGED'

    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', restore_config=True))
    assert rc == 0, output
    assert orthanc.api('GET', '/system')['DicomAet'] == 'ORTHANC' and orthanc.md5s() == before
    assert sorted(os.listdir(orthanc.config)) == sorted(['network.json', 'orthanc.json', 'security.json'] + [
        os.path.basename(path) for path in restore['previous_kept_at'] if path.startswith(orthanc.config)])
    kept = [path for path in restore['previous_kept_at'] if path.startswith(orthanc.config)]
    assert len(kept) == 1 and 'extra.json' in os.listdir(kept[0])
