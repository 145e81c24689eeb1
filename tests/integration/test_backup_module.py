# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_backup on one Orthanc: check mode, incremental backups, a stopped Orthanc, one that does not stop,
secrets, and what the storage lacks."""

from __future__ import annotations

import json
import os
import socket

import pytest

from harness import PASSWORD, listed_files, make_instances

from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository


def test_check_mode_plans_and_writes_nothing(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    pid = open(orthanc.pidfile).read()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository), check=True)
    assert rc == 0, output
    plan = result['plan']
    assert plan['files_to_copy'] == 24 and plan['files_to_link'] == 0 and plan['previous_backup'] is None
    assert plan['orthanc_running'] is True and plan['service']['manager'] == 'command'
    assert not os.path.exists(repository) and open(orthanc.pidfile).read() == pid


@pytest.mark.slow
def test_second_backup_links_everything_and_shares_no_inode_with_live(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    params = orthanc.module_params(repository=repository, instance='pacs')
    first, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    plan, rc, output = ansible.run('orthanc_backup', params, check=True)
    assert plan['plan']['files_to_copy'] == 0 and plan['plan']['files_to_link'] == 24
    second, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    storage_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, dummy, files in os.walk(orthanc.storage_dir)
                        for f in files if not f.startswith('index'))
    assert second['previous_backup'] == first['backup_id'] and second['bytes_linked'] == storage_bytes
    files = listed_files(second['path'])
    assert second['bytes_copied'] == sum(entry['size'] for name, entry in files.items() if not name.startswith('storage/'))
    live_inodes = set(os.stat(os.path.join(d, f)).st_ino for d, dummy, files in os.walk(orthanc.storage_dir)
                      for f in files)
    for backup in (first, second):
        for folder, dummy, files in os.walk(backup['path']):
            for name in files:
                info = os.stat(os.path.join(folder, name))
                assert info.st_ino not in live_inodes and info.st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_stopped_orthanc_is_backed_up_and_left_stopped(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    orthanc.stop()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository))
    assert rc == 0, output
    assert result['downtime_seconds'] == 0 and result['counts']['instances'] == 8
    assert not orthanc.answers()


@pytest.mark.slow
def test_orthanc_that_does_not_stop(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    pid = open(orthanc.pidfile).read()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='cold', stop_command='true', stop_timeout=2))
    assert rc != 0 and 'did not stop within 2 s' in result['msg']
    assert orthanc.answers() and open(orthanc.pidfile).read() == pid
    # No backup folder, partial or not: the failed run is only in the instance's history.
    assert sorted(os.listdir(os.path.join(repository, 'pacs'))) == ['.lock', '.runs.json']
    assert [run['status'] for run in Repository(repository, 'pacs').runs()] == ['failed']


@pytest.mark.slow
def test_rest_password_never_printed(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    params = orthanc.module_params(repository=repository, url=orthanc.url, url_username='admin', url_password=PASSWORD)
    result, rc, output = ansible.run('orthanc_backup', params, verbosity=3)
    assert rc == 0, output
    with open(os.path.join(result['path'], 'manifest.json')) as handle:
        manifest = handle.read()
    assert PASSWORD not in output and PASSWORD not in json.dumps(result) and PASSWORD not in manifest


@pytest.mark.slow
def test_orphans_missing_and_altered_files_are_reported(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    live = sorted(os.path.join(d, f) for d, dummy, files in os.walk(orthanc.storage_dir) for f in files
                  if not f.startswith('index'))
    missing, altered = live[0], live[1]
    os.unlink(missing)
    with open(altered, 'r+b') as handle:
        handle.seek(300)
        byte = handle.read(1)
        handle.seek(300)
        handle.write(bytes([byte[0] ^ 0x01]))
    orphan = os.path.join(orthanc.storage_dir, 'ab', 'cd', 'abcd0000-1111-2222-3333-444444444444')
    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    with open(orphan, 'wb') as handle:
        handle.write(b'not referenced by the index')

    refused, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository))
    assert rc != 0 and refused['live_missing'] == [os.path.basename(missing)] and refused['live_missing_count'] == 1
    assert ('1 of the 8 file(s) that the index references are not in the storage folder %s' % orthanc.storage_dir
            in refused['msg']) and 'allow_missing_files' in refused['msg']
    assert sorted(os.listdir(os.path.join(repository, socket.gethostname()))) == ['.lock', '.runs.json']
    assert orthanc.answers()

    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                             allow_missing_files=True))
    assert rc == 0, output
    assert result['orphans_skipped'] == 1 and result['live_missing_count'] == 1
    assert result['missing_attachments'] == [os.path.basename(missing)]
    assert result['md5_mismatches'] == [os.path.basename(altered)]
    assert 'referenced by the index are not in the storage' in output and 'differ from the size or MD5' in output
    backed_up = set(f for d, dummy, files in os.walk(os.path.join(result['path'], 'storage')) for f in files)
    assert os.path.basename(orphan) not in backed_up and os.path.basename(missing) not in backed_up
    assert os.path.basename(altered) in backed_up and len(backed_up) == 7


def test_a_previous_backup_rewritten_in_place_is_not_linked(make_orthanc, ansible, repository):
    """Issue 32 item 6 and issue 37: the next backup links the files the previous one holds, by their listing. Files
    of that backup rewritten in place with the same size (ransomware encrypting the repository, someone who can
    write it) are found among those read again at random: the new backup is not completed, and one with link=false
    takes every file from the live storage."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=2))
    params = orthanc.module_params(repository=repository, instance='pacs')
    first, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    for current, dummy, names in os.walk(os.path.join(first['path'], 'storage')):
        for name in names:
            with open(os.path.join(current, name), 'r+b') as handle:
                data = handle.read()
                handle.seek(0)
                handle.write(bytes(byte ^ 0x5A for byte in data))
    refused, rc, output = ansible.run('orthanc_backup', params)
    assert rc != 0 and 'no longer have the MD5 its listing holds' in refused['msg'] and refused['backup_changed'], output
    assert sorted(name for name in os.listdir(os.path.join(repository, 'pacs')) if not name.startswith('.')) == [
        first['backup_id']] and orthanc.answers()
    fresh, rc, output = ansible.run('orthanc_backup', dict(params, link=False))
    assert rc == 0 and fresh['bytes_linked'] == 0, output


@pytest.mark.slow
def test_a_jump_in_new_bytes_is_said_and_the_backup_before_it_is_kept(make_orthanc, ansible, repository):
    """Issue 37: a backup that copies ten times what the last ones did, most of the archive, is completed with a
    warning and marked in its manifest; retention then keeps the backup before it as long as it keeps the jump."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    params = orthanc.module_params(repository=repository, instance='pacs')
    usual = []
    for dummy in range(3):
        result, rc, output = ansible.run('orthanc_backup', params)
        assert rc == 0 and result['new_bytes_jump'] is False, output
        usual.append(result)
    orthanc.upload(make_instances(patients=12, first_patient=1, pixels=256))
    jump, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and jump['new_bytes_jump'] is True, output
    assert jump['bytes_copied'] > 10 * max(result['bytes_copied'] for result in usual)
    assert 'Backup %s copied %d new bytes' % (jump['backup_id'], jump['bytes_copied']) in output
    after, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0 and after['new_bytes_jump'] is False, output

    pruned, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                              'keep_last': 2})
    assert rc == 0 and pruned['kept'] == [usual[2]['backup_id'], jump['backup_id'], after['backup_id']], output
    assert pruned['reasons'][usual[2]['backup_id']] == ['before jump']
    restored, rc, output = ansible.run('orthanc_restore', dict(params, backup=usual[2]['backup_id']))
    assert rc == 0 and orthanc.statistics()['CountInstances'] == 8, output


def test_an_advanced_storage_layout_is_refused_before_anything(make_orthanc, ansible, repository):
    """Issue 33: with the advanced-storage plugin's own paths, files are not where the collection looks for them;
    the backup and the audit say so and touch nothing (the section is what Orthanc 1.12.8+ reads; 1.10 ignores it)."""
    orthanc = make_orthanc(settings={'AdvancedStorage': {'Enable': True,
                                                         'NamingScheme': '{PatientID}/{StudyInstanceUID}/{UUID}{.ext}'}})
    orthanc.upload(make_instances(patients=1))
    pid = open(orthanc.pidfile).read()
    for module, params in (('orthanc_backup', orthanc.module_params(repository=repository)),
                           ('orthanc_audit', {'config': orthanc.config, 'orphans': 'delete'})):
        result, rc, output = ansible.run(module, params)
        assert rc != 0 and 'sets AdvancedStorage with NamingScheme {PatientID}' in result['msg'], output
        assert 'Nothing was stopped or changed' in result['msg']
    assert not os.path.exists(repository) and open(orthanc.pidfile).read() == pid and orthanc.answers()
    info, rc, output = ansible.run('orthanc_info', {'config': orthanc.config})
    assert rc == 0 and info['unsupported_layout'].startswith('NamingScheme {PatientID}'), output
