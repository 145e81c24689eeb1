# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_backup_verify through ansible-playbook: a sound copy is completed, a damaged one never is."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from harness import make_instances, read_manifest, to_format_1, to_format_2

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def test_incoming_copy_is_completed_only_when_sound(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    central = str(tmp_path / 'central')
    incoming = os.path.join(central, 'pacs', backup['backup_id'] + '.partial')
    shutil.copytree(backup['path'], incoming)
    damaged = os.path.join(incoming, next(name for name in backup_files(incoming) if name.startswith('storage/')))
    with open(damaged, 'r+b') as handle:
        byte = handle.read(1)
        handle.seek(0)
        handle.write(bytes([byte[0] ^ 1]))
    params = {'repository': central, 'instance': 'pacs', 'backup': backup['backup_id'], 'incoming': True}
    listing, rc, output = ansible.run('orthanc_backup_repository', {'repository': central, 'instance': 'pacs'})
    assert rc == 0 and listing['backups'] == [] and listing['latest'] is None, output
    assert listing['partials'] == [backup['backup_id'] + '.partial']

    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc != 0 and 'does not match its manifest' in result['msg'] and len(result['problems']) == 1
    assert os.path.isdir(incoming) and not os.path.exists(os.path.join(central, 'pacs', backup['backup_id']))

    shutil.copy(os.path.join(backup['path'], os.path.relpath(damaged, incoming)), damaged)
    plan, rc, output = ansible.run('orthanc_backup_verify', params, check=True)
    assert rc == 0 and plan['changed'] is False and os.path.isdir(incoming), output
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc == 0 and result['changed'] and result['files'] == backup['files'], output
    assert result['path'] == os.path.join(central, 'pacs', backup['backup_id']) and not os.path.exists(incoming)

    listing, rc, output = ansible.run('orthanc_backup_repository', {'repository': central, 'instance': 'pacs'})
    assert listing['backups'] == [backup['backup_id']] == [listing['latest']] and listing['partials'] == []
    latest, rc, output = ansible.run('orthanc_backup_verify', {'repository': central, 'instance': 'pacs'})
    assert rc == 0 and latest['backup_id'] == backup['backup_id'] and latest['problems'] == [], output
    again, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc != 0 and 'already complete' in again['msg']


@pytest.mark.parametrize('converted, format_number, listings', [
    (to_format_1, 1, []),
    (to_format_2, 2, ['manifest-files.jsonl.gz']),
])
def test_a_backup_of_an_earlier_format_still_verifies_serves_as_the_previous_and_restores(
        make_orthanc, ansible, repository, converted, format_number, listings):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    first_md5s = orthanc.md5s()
    params = orthanc.module_params(repository=repository, instance='pacs')
    first, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    converted(first['path'])
    assert read_manifest(first['path'])['format'] == format_number
    assert sorted(os.listdir(first['path'])) == sorted(['config', 'index', 'manifest.json', 'storage'] + listings)

    verified, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and verified['problems_count'] == 0 and verified['files'] == first['files'], output
    orthanc.upload(make_instances(patients=1, first_patient=1))
    second, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and second['previous_backup'] == first['backup_id'] and second['bytes_linked'] > 0, output
    assert read_manifest(second['path'])['format'] == 3

    restored, rc, output = ansible.run('orthanc_restore', dict(params, backup=first['backup_id']))
    assert rc == 0 and restored['statistics']['CountInstances'] == len(first_md5s), output
    assert orthanc.md5s() == first_md5s


def test_repository_listing_creates_the_instance_folder_only_when_asked(ansible, tmp_path):
    params = {'repository': str(tmp_path / 'central'), 'instance': 'pacs2'}
    listing, rc, output = ansible.run('orthanc_backup_repository', params)
    assert rc == 0 and listing['changed'] is False and listing['backups'] == [], output
    plan, rc, output = ansible.run('orthanc_backup_repository', dict(params, create=True), check=True)
    assert rc == 0 and plan['changed'] is True and not os.path.exists(plan['path']), output
    created, rc, output = ansible.run('orthanc_backup_repository', dict(params, create=True))
    assert rc == 0 and created['changed'] is True and os.path.isdir(created['path']), output
    again, rc, output = ansible.run('orthanc_backup_repository', dict(params, create=True))
    assert rc == 0 and again['changed'] is False, output


def test_a_backup_of_more_files_than_a_run_is_verified_by_workers_through_ansible(ansible, tmp_path):
    """Over 1,024 files: verify, run by ansible-playbook, hashes them in worker processes forked from the module
    (on two cores or more) and names exactly the damaged ones, wherever they fall."""
    folder = tmp_path / 'central' / 'pacs' / '20260101T000000Z'
    entries = []
    for number in range(2500):
        uuid = '%08x-0000-4000-8000-%012d' % (number * 2654435761 % 2**32, number)
        data = b'instance %d ' % number * 50
        relative = 'storage/%s/%s/%s' % (uuid[:2], uuid[2:4], uuid)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        entries.append((relative, len(data), hashlib.md5(data).hexdigest()))
    entries.sort(key=lambda entry: _manifest.sort_key(entry[0]))
    _manifest.write(str(folder), {'status': 'complete', 'backup_id': '20260101T000000Z', 'counts': {}}, entries)
    params = {'repository': str(tmp_path / 'central'), 'instance': 'pacs', 'list_limit': 10}
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc == 0 and result['files'] == 2500 and result['problems_count'] == 0, output
    damaged = [entries[3][0], entries[1800][0]]
    for relative in damaged:
        data = (folder / relative).read_bytes()
        (folder / relative).write_bytes(data[:-1] + b'!')
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc != 0 and result['problems_count'] == 2, output
    assert [problem.split(' has MD5 ')[0] for problem in result['problems']] == damaged


def backup_files(folder):
    return sorted(os.path.relpath(os.path.join(current, name), folder)
                  for current, dummy, names in os.walk(folder) for name in names)
