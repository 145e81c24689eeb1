# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_audit against a running Orthanc: orphans found and quarantined, missing and damaged files
repaired from a backup, nothing touched in check mode or when the URL names another Orthanc."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid as uuidlib

import pytest

from harness import make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def storage_file(orthanc, uuid):
    return os.path.join(orthanc.storage_dir, uuid[0:2], uuid[2:4], uuid)


def dicom_uuid(orthanc, instance):
    return orthanc.api('GET', '/instances/%s/attachments/dicom/info' % instance)['Uuid']


def plant_orphan(orthanc, age):
    """An unreferenced file in the storage, last changed ``age`` seconds ago."""
    uuid = str(uuidlib.uuid4())
    path = storage_file(orthanc, uuid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(os.urandom(1000))
    os.utime(path, (time.time() - age, time.time() - age))
    return uuid, path


def stored_files(orthanc):
    return sorted(os.path.join(current, name) for current, dummy, names in os.walk(orthanc.storage_dir)
                  for name in names if not name.startswith('index'))


def md5(path):
    with open(path, 'rb') as handle:
        return hashlib.md5(handle.read()).hexdigest()


def every_instance_intact(orthanc):
    """Orthanc re-reads each DICOM file and checks it against the MD5 it recorded."""
    for instance in orthanc.instances():
        orthanc.api('POST', '/instances/%s/attachments/dicom/verify-md5' % instance, b'')
    return True


def test_audit_finds_cleans_and_repairs(make_orthanc, ansible, repository):
    orthanc = make_orthanc(compression=True)
    instances = orthanc.upload(make_instances(patients=2))
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    old_orphan, old_orphan_path = plant_orphan(orthanc, age=7200)
    young_orphan, young_orphan_path = plant_orphan(orthanc, age=0)
    lost, truncated, flipped = (dicom_uuid(orthanc, instance) for instance in instances[:3])
    os.unlink(storage_file(orthanc, lost))
    with open(storage_file(orthanc, truncated), 'r+b') as handle:
        handle.truncate(100)
    with open(storage_file(orthanc, flipped), 'r+b') as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 1]))
    params = {'config': orthanc.config, 'check_md5': True}

    pid = orthanc.pid()
    report, rc, output = ansible.run('orthanc_audit', params)
    assert rc == 0 and report['changed'] is False and report['healthy'] is False, output
    # The index read from a copy taken while Orthanc was frozen for milliseconds, never stopped.
    assert report['index_read'] == 'direct' and 0 < report['pause_seconds'] < 1 and orthanc.pid() == pid
    assert [orphan['uuid'] for orphan in report['orphans']] == [old_orphan] and report['orphans_count'] == 1
    assert report['orphan_bytes'] == 1000 and report['young_unreferenced'] == 1
    assert [(entry['uuid'], entry['resource'], entry['attachment']) for entry in report['missing']] == [
        (lost, 'instances/' + instances[0], 'dicom')]
    assert sorted(entry['uuid'] for entry in report['damaged']) == sorted([truncated, flipped])
    # Two attachments per instance in Orthanc 1.10 (dicom, dicom-until-pixel-data).
    assert report['referenced'] == report['on_disk'] - 2 + 1 == 2 * len(instances)
    assert os.path.exists(old_orphan_path)

    sizes_only, rc, output = ansible.run('orthanc_audit', dict(params, check_md5=False))
    assert rc == 0 and [entry['uuid'] for entry in sizes_only['damaged']] == [truncated], output

    repair = dict(params, orphans='quarantine', repair=True, repository=repository, instance='pacs')
    plan, rc, output = ansible.run('orthanc_audit', repair, check=True)
    assert rc == 0 and plan['changed'] is True and plan['repaired'] == sorted([lost, truncated, flipped]), output
    assert plan['quarantined'] == 0 and os.path.exists(old_orphan_path)
    assert not os.path.exists(storage_file(orthanc, lost))

    done, rc, output = ansible.run('orthanc_audit', repair)
    assert rc == 0 and done['changed'] is True and done['healthy'] is True, output
    assert done['quarantined'] == 1 and done['unrepaired'] == [] and done['repaired'] == plan['repaired']
    assert not os.path.exists(old_orphan_path) and os.path.exists(young_orphan_path)
    moved = os.path.join(done['quarantine_path'], old_orphan[0:2], old_orphan[2:4], old_orphan)
    assert os.path.isfile(moved)
    with open(os.path.join(done['quarantine_path'], 'orphans.json')) as handle:
        assert [entry['uuid'] for entry in json.load(handle)['orphans']] == [old_orphan]
    assert os.path.isfile(os.path.join(done['quarantine_path'], 'damaged', truncated[0:2], truncated[2:4], truncated))
    assert every_instance_intact(orthanc)
    for uuid in (lost, truncated, flipped):
        assert md5(storage_file(orthanc, uuid)) == md5(os.path.join(backup['path'], 'storage', uuid[0:2], uuid[2:4],
                                                                    uuid))

    again, rc, output = ansible.run('orthanc_audit', repair)
    assert rc == 0 and again['changed'] is False and again['healthy'] is True and again['orphans_count'] == 0, output


def test_files_no_backup_holds_stay_reported(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    backed_up = orthanc.upload(make_instances(patients=1, studies=1))
    dummy, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    newer = orthanc.upload(make_instances(patients=1, studies=1, series=1, instances=1))[0]
    lost = dicom_uuid(orthanc, newer)
    os.unlink(storage_file(orthanc, lost))
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'repair': True,
                                                       'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and result['changed'] is False and result['healthy'] is False, output
    assert result['repaired'] == [] and result['unrepaired'] == [lost]
    assert result['missing'][0]['resource'] == 'instances/' + newer

    # A folder of the storage lost with its files, the storage owned by another account than the module's (as
    # Debian's orthanc user owns it): the repair makes the folder again like the storage, so Orthanc can write there.
    repaired = dicom_uuid(orthanc, backed_up[0])
    folder = os.path.dirname(storage_file(orthanc, repaired))
    shutil.rmtree(folder)
    storage = os.path.dirname(os.path.dirname(folder))
    os.chown(storage, 65534, 65534)
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'repair': True,
                                                       'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and repaired in result['repaired'], output
    made, root = os.stat(folder), os.stat(storage)
    assert (made.st_uid, made.st_gid, made.st_mode & 0o777) == (65534, 65534, root.st_mode & 0o777)
    assert os.stat(storage_file(orthanc, repaired)).st_uid == 65534

    # That folder swapped for a link to an empty folder elsewhere: its files are missing, the backup holds them,
    # and the repair refuses to put anything back through the link.
    outside = str(tmp_path / 'outside')
    os.mkdir(outside)
    os.rename(folder, str(tmp_path / 'moved'))
    os.symlink(outside, folder)
    refused, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'repair': True,
                                                        'repository': repository, 'instance': 'pacs'})
    assert rc != 0 and 'Nothing was put back' in refused['msg'] and 'symbolic link' in refused['msg'], output
    assert os.listdir(outside) == [] and os.path.islink(folder)


def test_delete_orphans(make_orthanc, ansible):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1, studies=1))
    orphan, path = plant_orphan(orthanc, age=600)
    kept, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'orphans': 'delete'})
    assert rc == 0 and kept['changed'] is False and kept['young_unreferenced'] == 1 and os.path.exists(path), output
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'orphans': 'delete', 'min_age': 60})
    assert rc == 0 and result['changed'] is True and result['removed'] == 1 and not os.path.exists(path), output
    assert result['healthy'] is True and every_instance_intact(orthanc)


def test_a_quarantine_another_account_planted_is_refused(make_orthanc, ansible, tmp_path):
    """Issue 32: the quarantine sits beside the storage, where the Orthanc user may write. A link planted there
    (to a folder of the attacker's choice, such as /etc/cron.d), or a folder another account owns, would have root
    move files the Orthanc user wrote wherever it says: refused, nothing moved."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1, studies=1))
    orphan, path = plant_orphan(orthanc, age=600)
    quarantine, elsewhere = orthanc.storage_dir + '-quarantine', str(tmp_path / 'cron.d')
    os.mkdir(elsewhere)
    os.symlink(elsewhere, quarantine)
    params = {'config': orthanc.config, 'orphans': 'quarantine', 'min_age': 60}
    result, rc, output = ansible.run('orthanc_audit', params)
    assert rc != 0 and 'The quarantine folder %s cannot be used' % quarantine in result['msg'], output
    assert os.path.exists(path) and os.listdir(elsewhere) == []
    os.unlink(quarantine)
    os.mkdir(quarantine)
    os.chown(quarantine, 65534, 65534)
    result, rc, output = ansible.run('orthanc_audit', params)
    assert rc != 0 and 'belongs to uid 65534' in result['msg'] and os.path.exists(path), output
    os.rmdir(quarantine)
    result, rc, output = ansible.run('orthanc_audit', params, umask=0)
    assert rc == 0 and result['quarantined'] == 1 and not os.path.exists(path), output
    assert os.stat(quarantine).st_mode & 0o777 == 0o700 and os.stat(result['quarantine_path']).st_mode & 0o777 == 0o700
    assert os.path.isfile(os.path.join(result['quarantine_path'], orphan[0:2], orphan[2:4], orphan))
    assert every_instance_intact(orthanc)


def test_another_orthanc_is_refused_and_nothing_moves(make_orthanc, ansible):
    orthanc = make_orthanc('audited')
    other = make_orthanc('other')
    orthanc.upload(make_instances(patients=1, studies=1))
    files = stored_files(orthanc)
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'url': other.url,
                                                       'orphans': 'delete', 'min_age': 0})
    assert rc != 0 and 'runs the configuration %s, not %s' % (other.config, orthanc.config) in result['msg'], output
    assert stored_files(orthanc) == files and every_instance_intact(orthanc)

    orthanc.stop()
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config, 'orphans': 'delete', 'min_age': 0})
    assert rc != 0 and 'does not answer' in result['msg'], output
    assert stored_files(orthanc) == files


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index', 'mysql-index-and-storage'],
                         indirect=True)
def test_database_backends(database_orthanc, ansible):
    orthanc, database = database_orthanc
    instances = orthanc.upload(make_instances(patients=1, studies=1))
    result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config})
    assert rc == 0 and result['healthy'] is True, output
    if database.enable_storage:
        assert result['audited'] is False and 'stored in the database' in result['msg']
    else:
        # The index read with one query; the same findings as over REST, named as REST names them.
        assert result['index_read'] == 'direct' and result['pause_seconds'] == 0
        assert result['referenced'] == result['on_disk'] == len(stored_files(orthanc)) >= len(instances)
        lost = dicom_uuid(orthanc, instances[0])
        os.unlink(storage_file(orthanc, lost))
        orphan, dummy = plant_orphan(orthanc, age=7200)
        result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config})
        assert rc == 0 and result['healthy'] is False, output
        assert [(entry['uuid'], entry['resource'], entry['attachment']) for entry in result['missing']] == [
            (lost, 'instances/' + instances[0], 'dicom')]
        assert [entry['uuid'] for entry in result['orphans']] == [orphan]
        # Once Orthanc has deleted its instance, the lost file is no finding.
        orthanc.api('DELETE', '/instances/' + instances[0])
        result, rc, output = ansible.run('orthanc_audit', {'config': orthanc.config})
        assert rc == 0 and result['missing'] == [], output
