# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Forged backups, as whoever can write the repository makes them (dump, listing and manifest rewritten to
match): nothing in them is executed, and, with a backup key, none of them is used, counted or pruned."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from harness import complete_backups, listed_files, make_instances, read_manifest, rewrite_listing, write_manifest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._authentication import BackupKey


def forge_file(backup_path, relative, prefix):
    """Put ``prefix`` before a backup's file and list it again with its new size and MD5."""
    path = os.path.join(backup_path, relative)
    with open(path, 'rb') as handle:
        data = prefix + handle.read()
    with open(path, 'wb') as handle:
        handle.write(data)
    rewrite_listing(backup_path, lambda files: files[relative].update(size=len(data), md5=hashlib.md5(data).hexdigest()))


@pytest.mark.slow
@pytest.mark.parametrize('database_orthanc', ['mysql-index'], indirect=True)
def test_a_forged_mysql_dump_runs_no_shell_command(database_orthanc, ansible, repository, tmp_path):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    live = orthanc.md5s()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    marker = tmp_path / 'run-by-the-dump'
    forge_file(backup['path'], 'db/orthanc.sql', b'\\! touch %s\nsystem touch %s\n' % (
        str(marker).encode(), str(marker).encode()))

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'Not allowed in the sandbox mode' in result['msg'], output
    assert not marker.exists()
    assert orthanc.md5s() == live and database.databases() == [database.name]


KEY = 'a-backup-key-of-the-tests-' + 'x' * 16
OTHER_KEY = 'another-key-of-the-tests-' + 'y' * 16


def copy_backup(backup_path, backup_id, change=None):
    """A copy of a backup under another id, its manifest naming that id: what a forger starts from."""
    folder = os.path.join(os.path.dirname(backup_path), backup_id)
    shutil.copytree(backup_path, folder)
    values = read_manifest(folder)
    values['backup_id'] = backup_id
    if change:
        change(values)
    write_manifest(folder, values)
    return folder


def signed_with(key):
    def sign(values):
        values.update(BackupKey(key).seal(values))
    return sign


def nested(folder):
    with open(os.path.join(folder, 'manifest.json'), 'w') as handle:
        handle.write('[' * 100000 + ']' * 100000)


FORGERIES = {
    # name: (the folder's id, how it is forged once copied, the backup key the modules get, the refusal)
    # The forger keeps the seal of the backup copied, or drops it ('unsigned' below).
    'index and listing rewritten': ('20260102T000000Z', lambda folder: forge_file(folder, 'index/index', b'x'), KEY,
                                    'its signature does not match its contents'),
    'unsigned': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        (key, value) for key, value in read_manifest(folder).items() if key != 'authentication')), KEY,
        'it is not signed'),
    'signed with another key': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), **BackupKey(OTHER_KEY).seal(read_manifest(folder)))), KEY,
        'it is signed with another key'),
    'changed after it was signed': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        BackupKey(KEY).seal(read_manifest(folder)), counts={'instances': 0})), KEY,
        'its signature does not match its contents'),
    'planted newest id': ('29991231T235959Z', None, None, 'its id is a time to come'),
    'nested JSON': ('20260102T000000Z', nested, None, 'nests too deep'),
    'claimed 10^9 records': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), files=10 ** 9)), None, 'its listings hold 2'),
    'wrong bytes': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), bytes=1)), None, 'bytes, the manifest says 1'),
    'another instance': ('20260102T000000Z', lambda folder: write_manifest(folder, dict(
        read_manifest(folder), instance='other')), None, "its manifest is that of instance 'other'"),
}


@pytest.mark.parametrize('forgery', sorted(FORGERIES))
def test_a_forged_backup_is_refused_by_name_and_changes_nothing(loaded, ansible, repository, forgery):
    orthanc, live = loaded
    backup_id, forge, key, refusal = FORGERIES[forgery]
    params = orthanc.module_params(repository=repository, instance='pacs', backup_key=key)
    real, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and real['authenticated'] == bool(key), output
    folder = copy_backup(real['path'], backup_id)
    if forge:
        forge(folder)
    before = listed_files(real['path'])

    result, rc, output = ansible.run('orthanc_restore', dict(params, backup=backup_id))
    assert rc != 0 and backup_id in result['msg'] and refusal in result['msg'], output
    assert orthanc.md5s() == live and listed_files(real['path']) == before
    # The latest backup is the real one, and a prune counts only it: the forged folder stays, left alone.
    verify, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs',
                                                               'backup_key': key})
    assert rc == 0 and verify['backup_id'] == real['backup_id'] and verify['authenticated'] == bool(key), output
    prune, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                             'backup_key': key, 'keep_last': 1})
    assert rc == 0 and prune['kept'] == [real['backup_id']] and prune['removed'] == [], output
    assert refusal in prune['left_alone'][backup_id]
    assert os.path.isdir(folder) and complete_backups(repository) == sorted([real['backup_id'], backup_id])


def test_a_planted_newest_folder_makes_prune_remove_no_real_backup(loaded, ansible, repository):
    """Seen on efe99ee: a folder 29991231T235959Z with a one-line manifest made keep_last 1 remove both real
    backups."""
    orthanc, live = loaded
    params = orthanc.module_params(repository=repository, instance='pacs')
    real = [ansible.run('orthanc_backup', params)[0]['backup_id'] for dummy in range(2)]
    planted = os.path.join(repository, 'pacs', '29991231T235959Z')
    os.mkdir(planted)
    with open(os.path.join(planted, 'manifest.json'), 'w') as handle:
        handle.write('{"status": "complete", "format": 1, "backup_id": "29991231T235959Z", "counts": {}, "files": {}}')
    prune, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                             'keep_last': 1})
    assert rc == 0 and prune['kept'] == [real[1]] and prune['removed'] == [real[0]], output
    assert complete_backups(repository) == [real[1], '29991231T235959Z']
    assert any('29991231T235959Z' in warning and 'left alone' in warning for warning in prune['warnings'])


def test_with_a_key_only_signed_backups_are_linked_used_and_signed_ones_restore(loaded, ansible, repository):
    orthanc, live = loaded
    params = orthanc.module_params(repository=repository, instance='pacs')
    unsigned, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and not unsigned['authenticated'], output
    assert any('No backup_key was given' in warning for warning in unsigned['warnings'])
    keyed = dict(params, backup_key=KEY)
    first, rc, output = ansible.run('orthanc_backup', keyed)
    # The unsigned backup is no backup for the key: nothing is linked from it.
    assert rc == 0 and first['authenticated'] and first['previous_backup'] is None, output
    assert 'No backup_key was given' not in ' '.join(first.get('warnings', []))
    # Signing the unsigned one (checked first) makes it a backup again, signed once.
    signing = {'repository': repository, 'instance': 'pacs', 'backup': unsigned['backup_id'], 'backup_key': KEY,
               'sign': True}
    signed, rc, output = ansible.run('orthanc_backup_verify', signing)
    assert rc == 0 and signed['signed'] and signed['changed'] and signed['authenticated'], output
    again, rc, output = ansible.run('orthanc_backup_verify', signing)
    assert rc == 0 and not again['signed'] and not again['changed'], output
    assert complete_backups(repository) == sorted([unsigned['backup_id'], first['backup_id']])

    orthanc.wipe()
    orthanc.start()
    restored, rc, output = ansible.run('orthanc_restore', dict(keyed, backup=unsigned['backup_id']))
    assert rc == 0 and restored['authenticated'], output
    assert orthanc.md5s() == live
