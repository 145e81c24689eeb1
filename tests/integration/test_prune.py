# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_backup_prune through ansible-playbook on a repository of backups dated over months."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from uuid import uuid4

import pytest

from harness import make_instances


def fake_backups(repository, ids, shared):
    """Complete backups (manifest status complete) that all hard-link one shared file, plus one own file each; each
    names the one before as the backup it was taken after."""
    folder = os.path.join(repository, 'pacs')
    os.makedirs(folder)
    with open(shared, 'wb') as handle:
        handle.write(b's' * 1000)
    for previous, backup_id in zip([None] + ids, ids):
        os.makedirs(os.path.join(folder, backup_id, 'storage'))
        with open(os.path.join(folder, backup_id, 'manifest.json'), 'w') as handle:
            json.dump({'status': 'complete', 'format': 1, 'backup_id': backup_id, 'counts': {}, 'files': {},
                       'previous_backup': previous}, handle)
        with open(os.path.join(folder, backup_id, 'storage', 'own'), 'wb') as handle:
            handle.write(b'o' * 100)
        os.link(shared, os.path.join(folder, backup_id, 'storage', 'shared'))
    os.makedirs(os.path.join(folder, '20261128T000000Z.partial'))
    return folder


def test_prune_keeps_exactly_the_policy(ansible, repository, tmp_path):
    ids = ['2026%02d%02dT010000Z' % (month, day) for month in (9, 10, 11) for day in (1, 10, 20, 28)]
    folder = fake_backups(repository, ids, str(tmp_path / 'shared'))
    manifest_sizes = dict((backup_id, os.path.getsize(os.path.join(folder, backup_id, 'manifest.json')))
                          for backup_id in ids)
    params = {'repository': repository, 'instance': 'pacs', 'keep_last': 2, 'keep_monthly': 2}
    expected = ['20261028T010000Z', '20261120T010000Z', '20261128T010000Z']    # last 2, newest of Nov and Oct

    plan, rc, output = ansible.run('orthanc_backup_prune', params, check=True)
    assert rc == 0, output
    assert plan['kept'] == expected and len(plan['removed']) == len(ids) - 3
    assert len(os.listdir(folder)) == len(ids) + 1

    result, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0, output
    assert result['kept'] == plan['kept'] and result['removed'] == plan['removed']
    assert sorted(name for name in os.listdir(folder) if not name.startswith('.')) == result['kept']
    assert result['partials_removed'] == ['20261128T000000Z.partial']
    # Each removed backup frees its own file and manifest; the file they all link stays.
    assert result['bytes_freed'] == sum(100 + manifest_sizes[backup_id] for backup_id in result['removed'])

    again, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0 and again['changed'] is False and again['removed'] == []
    assert result['disappeared'] == again['disappeared'] == []      # what retention removed is not reported


def test_backups_removed_outside_retention_are_reported(ansible, repository, tmp_path):
    """Issue 37: a backup the policy keeps that something else removed (ransomware on the backup host, a person)
    is named by the next prune, from the chain of backups their signed manifests name."""
    ids = ['2026%02d%02dT010000Z' % (month, day) for month in (10, 11) for day in (1, 10, 20)]
    folder = fake_backups(repository, ids, str(tmp_path / 'shared'))
    params = {'repository': repository, 'instance': 'pacs', 'keep_last': 3}
    result, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0 and result['removed'] == ids[:3] and result['disappeared'] == [], output
    shutil.rmtree(os.path.join(folder, ids[4]))
    result, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0 and result['disappeared'] == [ids[4]], output
    assert 'Backup(s) %s of instance "pacs" are gone from %s although the retention policy keeps them' % (
        ids[4], folder) in output


@pytest.mark.slow
def test_prune_after_real_backups_keeps_the_newest(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    params = orthanc.module_params(repository=repository, instance='pacs')
    first, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    second, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    result, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                              'keep_last': 1})
    assert rc == 0, output
    assert result['kept'] == [second['backup_id']] and result['removed'] == [first['backup_id']]
    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0 and restore['backup_id'] == second['backup_id'], output


@pytest.mark.slow
def test_backup_playbook_backs_up_and_prunes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    extra = {'orthanc_backup_hosts': 'localhost', 'orthanc_backup_config': orthanc.config,
             'orthanc_backup_repository': repository, 'orthanc_backup_instance': 'pacs',
             'orthanc_backup_service_manager': 'command', 'orthanc_backup_stop_command': orthanc.stop_command,
             'orthanc_backup_start_command': orthanc.start_command, 'orthanc_backup_keep_last': 1,
             'orthanc_backup_report_dir': str(tmp_path / 'report')}
    pid = open(orthanc.pidfile).read()
    rc, output = ansible.run_playbook('backup', extra, check=True)
    assert rc == 0 and '1 of 1 hosts would be backed up (check mode), 0 failed' in output, output
    assert not os.path.exists(repository) and open(orthanc.pidfile).read() == pid
    for dummy in range(2):
        rc, output = ansible.run_playbook('backup', extra)
        assert rc == 0, output
        assert 'instances of 1 patients' in output
    backups = [name for name in os.listdir(os.path.join(repository, 'pacs')) if not name.startswith('.')]
    assert len(backups) == 1 and orthanc.answers()


def listed_backups(repository, ids, jump_after=None):
    """Complete backups of 40 storage files each, listed with their MD5 (format 1), each naming the one before;
    the backup ``jump_after`` names says its new bytes jumped."""
    folder = os.path.join(repository, 'pacs')
    for previous, backup_id in zip([None] + ids, ids):
        files = {}
        for number in range(40):
            data = ('%s file %d' % (backup_id, number)).encode()
            uuid = str(uuid4())
            relative = 'storage/%s/%s/%s' % (uuid[0:2], uuid[2:4], uuid)
            os.makedirs(os.path.dirname(os.path.join(folder, backup_id, relative)), exist_ok=True)
            with open(os.path.join(folder, backup_id, relative), 'wb') as handle:
                handle.write(data)
            files[relative] = {'size': len(data), 'md5': hashlib.md5(data).hexdigest()}
        with open(os.path.join(folder, backup_id, 'manifest.json'), 'w') as handle:
            json.dump({'status': 'complete', 'format': 1, 'backup_id': backup_id, 'counts': {}, 'files': files,
                       'previous_backup': previous, 'new_bytes_jump': previous is not None and previous == jump_after},
                      handle)
    return folder


def test_every_backup_is_read_again_and_one_rewritten_or_gone_is_reported_without_a_policy(ansible, repository):
    """Issue 37: a backup encrypted after it was taken, whichever it is, and a backup gone (the newest too, which no
    later backup names), are found by the next check, with no retention policy; what a prune removes is not."""
    ids = ['202611%02dT010000Z' % day for day in (1, 2, 3, 4)]
    folder = listed_backups(repository, ids)
    params = {'repository': repository, 'instance': 'pacs', 'backup': 'all', 'sample_files': 32}
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc == 0 and result['changed_backups'] == result['disappeared'] == [], output
    assert [backup['backup_id'] for backup in result['backups']] == ids

    # Ransomware on the backup host: every file of the second backup replaced by its encrypted copy.
    for root, dummy, names in os.walk(os.path.join(folder, ids[1], 'storage')):
        for name in names:
            with open(os.path.join(root, name), 'rb') as handle:
                data = handle.read()
            os.unlink(os.path.join(root, name))
            with open(os.path.join(root, name), 'wb') as handle:
                handle.write(hashlib.sha256(data).digest())
    shutil.rmtree(os.path.join(folder, ids[3]))
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc != 0 and result['changed_backups'] == [ids[1]] and result['disappeared'] == [ids[3]], output
    assert [backup['problems_count'] for backup in result['backups']] == [0, 32, 0]
    assert 'backup %s is gone since the last check, and no prune removed it' % ids[3] in output

    # Said once: the next check compares with what this one saw; the rewritten backup is named until it goes.
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc != 0 and result['changed_backups'] == [ids[1]] and result['disappeared'] == [], output
    pruned, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                              'keep_last': 1})
    assert rc == 0 and pruned['removed'] == ids[:2], output
    result, rc, output = ansible.run('orthanc_backup_verify', params)
    assert rc == 0 and result['changed_backups'] == result['disappeared'] == [], output


def test_retention_keeps_the_last_backup_before_a_jump_in_new_bytes_as_long_as_the_jump(ansible, repository):
    ids = ['202611%02dT010000Z' % day for day in (1, 2, 3, 4, 5)]
    folder = listed_backups(repository, ids, jump_after=ids[1])
    params = {'repository': repository, 'instance': 'pacs', 'keep_last': 3}
    result, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0 and result['kept'] == ids[1:] and result['removed'] == [ids[0]], output
    assert result['reasons'][ids[1]] == ['before jump'] and result['reasons'][ids[2]] == ['last'], output
    # Once retention lets the backup after the jump go, the one before goes with it.
    result, rc, output = ansible.run('orthanc_backup_prune', dict(params, keep_last=2))
    assert rc == 0 and result['removed'] == [ids[1], ids[2]], output
    assert sorted(name for name in os.listdir(folder) if not name.startswith('.')) == ids[3:]
