# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc in a Podman container, as Docker Compose deployments run it: the configuration is what the
container runs (with ${NAME} from the container's environment), the storage is on a bind mount, and
the container is stopped and started through the engine."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time

import pytest

from harness import ContainerOrthanc, ContainerPostgres, complete_backups, container_image, make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def test_backup_wipe_restore_of_a_container(make_container_orthanc, ansible, repository):
    orthanc = make_container_orthanc()
    orthanc.upload(make_instances(patients=2))
    before = orthanc.md5s()

    info, rc, output = ansible.run('orthanc_info', {'service_name': orthanc.name})
    assert rc == 0, output
    assert info['deployment'] == {'kind': 'container', 'engine': 'podman', 'name': orthanc.name, 'running': True,
                                  'image': info['deployment']['image']}
    assert info['storage_dir'] == orthanc.storage_dir and info['http_port'] == orthanc.port

    pid = orthanc.pid()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs',
                                                                             mode='cold'))
    assert rc == 0, output
    assert backup['files'] == len(before) + 2 and backup['live_missing_count'] == 0    # + index + orthanc.json
    assert backup['downtime_seconds'] > 0 and orthanc.answers() and orthanc.pid() != pid
    with open(os.path.join(backup['path'], 'manifest.json')) as handle:
        manifest = json.load(handle)
    assert manifest['config_path'] == '/etc/orthanc' and manifest['deployment']['engine'] == 'podman'
    assert manifest['storage_dir'] == orthanc.storage_dir

    orthanc.wipe()
    orthanc.start()
    assert orthanc.instances() == []
    restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository,
                                                                                instance='pacs'))
    assert rc == 0 and restored['statistics']['CountInstances'] == len(before), output
    assert orthanc.md5s() == before


def test_a_stopped_container_runs_the_configuration_its_entrypoint_generated(
        make_container_orthanc, ansible, repository):
    # As orthancteam/orthanc does: the entrypoint writes /tmp/orthanc.json (in the container's own layer)
    # and runs Orthanc with it; once the container is stopped, only that file says what it runs.
    orthanc = make_container_orthanc(generated=True)
    orthanc.upload(make_instances(patients=1))
    before = orthanc.md5s()
    # Frozen through the container's own processes (no port of the host is Orthanc's own).
    pid = orthanc.pid()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs',
                                                                             mode='freeze'))
    assert rc == 0 and backup['counts']['instances'] == len(before), output
    assert backup['downtime_seconds'] == 0 and 0 < backup['pause_seconds'] < 1 and orthanc.pid() == pid
    with open(os.path.join(backup['path'], 'manifest.json')) as handle:
        assert json.load(handle)['config_path'] == '/tmp/orthanc.json'

    orthanc.wipe()
    info, rc, output = ansible.run('orthanc_info', {'service_name': orthanc.name})
    assert rc == 0, output
    assert info['deployment']['running'] is False and info['storage_dir'] == orthanc.storage_dir
    restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository,
                                                                                instance='pacs'))
    assert rc == 0, output
    assert 'Orthanc was not running' in ' '.join(restored.get('warnings', []))
    orthanc.start()
    assert orthanc.md5s() == before


def test_a_generated_configuration_that_is_missing_or_a_link_is_refused(make_container_orthanc, ansible, tmp_path):
    # Created, never run: no configuration was generated yet.
    orthanc = make_container_orthanc(generated=True, start=False)
    result, rc, output = ansible.run('orthanc_info', {'service_name': orthanc.name})
    assert rc != 0 and 'holds no generated /tmp/orthanc.json' in result['msg'], output
    # A link planted where the configuration is generated is never followed to the host's file.
    host_only = tmp_path / 'host-only.json'
    host_only.write_text('{"StorageDirectory": "/host-only-marker"}')
    planted = tmp_path / 'planted'
    planted.mkdir()
    os.symlink(str(host_only), str(planted / 'orthanc.json'))
    archive = subprocess.run(['tar', '-C', str(planted), '-cf', '-', 'orthanc.json'], check=True,
                             capture_output=True).stdout    # a tar stream: the link itself goes in
    subprocess.run(['podman', 'cp', '-', '%s:/tmp/' % orthanc.name], input=archive, check=True, capture_output=True)
    result, rc, output = ansible.run('orthanc_info', {'service_name': orthanc.name})
    assert rc != 0 and 'host-only-marker' not in output and 'storage_dir' not in result, output


def test_a_container_that_does_not_exist_is_a_clear_error(ansible, repository):
    result, rc, output = ansible.run('orthanc_backup', {'service_manager': 'podman', 'service_name': 'no-such-orthanc',
                                                        'repository': repository})
    assert rc != 0 and 'There is no podman container named "no-such-orthanc"' in result['msg']
    assert complete_backups(repository) == []


def test_storage_in_the_writable_layer_is_refused_before_anything_is_stopped(make_container_orthanc, ansible,
                                                                             repository):
    orthanc = make_container_orthanc(volume=False)
    orthanc.upload(make_instances(patients=1))
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'folder /var/lib/orthanc/db is not on a volume or bind mount' in result['msg']
    assert "writable layer" in result['msg'] and orthanc.pid() == pid and orthanc.answers()
    assert complete_backups(repository) == []


def test_postgresql_index_in_a_second_container(make_container_orthanc, container_postgres, ansible, repository):
    database = container_postgres
    orthanc = make_container_orthanc(settings=database.orthanc_settings(),
                                     environment={'ORTHANC_DB_PASSWORD': database.password})
    orthanc.upload(make_instances(patients=2))
    before = orthanc.md5s()
    pid = orthanc.pid()

    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'),
                                     verbosity=2)
    assert rc == 0, output
    assert backup['index_backend'] == 'postgresql' and backup['downtime_seconds'] == 0 and orthanc.pid() == pid
    assert backup['counts']['instances'] == len(before) and backup['live_missing_count'] == 0
    assert database.password not in output and database.password not in json.dumps(backup)

    orthanc.wipe()
    database.recreate()
    orthanc.start()
    assert orthanc.instances() == []
    restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository,
                                                                                instance='pacs'))
    assert rc == 0, output
    assert orthanc.md5s() == before


def test_postgresql_on_a_compose_network_through_the_database_container(
        make_container_orthanc, container_network, orthanc_image, ansible, repository):
    # As Compose runs it: both containers on a network of their own, Orthanc naming the database by its
    # service name, only Orthanc's HTTP port published. The host has neither the name nor a port.
    database = ContainerPostgres(orthanc_image, network=container_network)
    try:
        # Requests through the published port come from the network's gateway, not from Orthanc's loopback.
        orthanc = make_container_orthanc(settings=dict(database.orthanc_settings(host='postgres'),
                                                       RemoteAccessAllowed=True),
                                         environment={'ORTHANC_DB_PASSWORD': database.password},
                                         network=container_network, hosts={'postgres': database.address})
        orthanc.upload(make_instances(patients=2))
        before = orthanc.md5s()
        pid = orthanc.pid()

        result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                                 instance='pacs'))
        assert rc != 0 and 'Cannot connect to the PostgreSQL database "orthanc" at postgres:' in result['msg']
        assert 'set database_container' in result['msg'], result['msg']
        result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
            repository=repository, instance='pacs', database_container='no-such-database'))
        assert rc != 0 and 'There is no docker or podman container named "no-such-database"' in result['msg']
        assert complete_backups(repository) == [] and orthanc.pid() == pid and orthanc.answers()

        params = orthanc.module_params(repository=repository, instance='pacs', database_container=database.name)
        backup, rc, output = ansible.run('orthanc_backup', params, verbosity=3)
        assert rc == 0, output
        assert backup['index_backend'] == 'postgresql' and backup['counts']['instances'] == len(before)
        assert backup['downtime_seconds'] == 0 and orthanc.pid() == pid
        assert database.password not in output and database.password not in json.dumps(backup)

        # The throwaway Orthanc of a drill or a recovery runs in the database container's network, where the
        # index is reached at 127.0.0.1 (on the host, that address is another server's: this host's PostgreSQL).
        sandbox = dict(service_name=orthanc.name, repository=repository, instance='pacs',
                       database_container=database.name)
        drill, rc, output = ansible.run('orthanc_drill', dict(sandbox, check_instances=2))
        assert rc == 0 and drill['passed'] is True and drill['checked_instances'] == 2, output
        assert drill['statistics']['CountInstances'] == len(before)
        study = orthanc.api('GET', '/studies')[0]
        uid = orthanc.api('GET', '/studies/%s' % study)['MainDicomTags']['StudyInstanceUID']
        orthanc.api('DELETE', '/studies/%s' % study)
        recovered, rc, output = ansible.run('orthanc_recover', dict(sandbox, study_instance_uids=[uid]))
        assert rc == 0 and recovered['recovered_instances'] > 0 and orthanc.md5s() == before, output
        assert database.password not in output

        orthanc.wipe()
        database.recreate()
        orthanc.start()
        assert orthanc.instances() == []
        restored, rc, output = ansible.run('orthanc_restore', params)
        assert rc == 0, output
        assert orthanc.md5s() == before

        database.stop()
        result, rc, output = ansible.run('orthanc_backup', params)
        assert rc != 0 and 'The database container "%s" is not running' % database.name in result['msg']
        assert complete_backups(repository) == [backup['backup_id']]
    finally:
        database.remove()


@contextlib.contextmanager
def delayed_deletion_orthanc(tmp_path):
    """Debian 13's Orthanc 1.12 in a container, with its DelayedDeletion plugin deleting a file a second, holding two
    studies of 12 instances; removed afterwards."""
    orthanc = ContainerOrthanc(str(tmp_path / 'trixie'), container_image('trixie'), settings={
        'Plugins': ['/usr/share/orthanc/plugins/libDelayedDeletion.so'],
        'DelayedDeletion': {'Enable': True, 'ThrottleDelayMs': 1000}})
    try:
        orthanc.start()
        orthanc.upload(make_instances(patients=1, studies=2, series=1, instances=12))
        yield orthanc
    finally:
        orthanc.remove()


def test_a_restore_puts_the_delayed_deletion_queue_aside(ansible, repository, tmp_path):
    """Issue 33: Orthanc 1.12's DelayedDeletion plugin keeps, in the storage folder, a queue of the files Orthanc
    removed from its index, and deletes them in the background. A restore just after a deletion brings those files
    back; left in place, the queue would have the plugin delete them under the restored Orthanc. It is put aside
    with the data it belongs to."""
    with delayed_deletion_orthanc(tmp_path) as orthanc:
        before = orthanc.md5s()
        backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                                 instance='pacs', mode='cold'))
        assert rc == 0, output
        orthanc.api('DELETE', '/studies/%s' % orthanc.api('GET', '/studies')[0])    # 12 files, one a second
        assert glob.glob(os.path.join(orthanc.storage_dir, 'pending-deletions.*.db'))
        restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository,
                                                                                    instance='pacs'))
        assert rc == 0 and orthanc.md5s() == before, output
        time.sleep(6)
        for instance in before:     # Orthanc reads each file again
            orthanc.api('POST', '/instances/%s/attachments/dicom/verify-md5' % instance, b'')


def test_the_audit_never_moves_files_queued_for_deletion(ansible, tmp_path):
    """Issue 33: DelayedDeletion's queued files are gone from the index but still in the storage folder, where they
    look like orphans. While the plugin has any left to delete, the audit moves no orphan and says why; once it is
    done, nothing is left to call an orphan."""
    with delayed_deletion_orthanc(tmp_path) as orthanc:
        orthanc.api('DELETE', '/studies/%s' % orthanc.api('GET', '/studies')[0])    # 12 files, one a second
        params = {'service_name': orthanc.name, 'orphans': 'quarantine', 'min_age': 0}
        refused, rc, output = ansible.run('orthanc_audit', params)
        assert rc != 0 and refused['pending_deletions'] > 0 and refused['quarantined'] == 0, output
        assert 0 < refused['orphans_count'] <= 12 and 'queued for deletion' in refused['msg']
        assert not os.path.exists(orthanc.storage_dir.rstrip('/') + '-quarantine')
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and orthanc.api('GET', '/plugins/delayed-deletion/status')[
                'FilesPendingDeletion']:
            time.sleep(1)
        done, rc, output = ansible.run('orthanc_audit', params)
        assert rc == 0 and done['pending_deletions'] == 0 and done['orphans_count'] == 0 and done['healthy'], output
        assert len(orthanc.instances()) == 12


def test_an_orthanc_of_several_configuration_paths_is_refused(ansible, repository, tmp_path):
    """Issue 33: Orthanc 1.13 reads several configuration paths given on its command line; reading one of them would
    miss what the others set (the storage folder, the database). Refused before anything (Debian testing's Orthanc
    1.13, in a container)."""
    root = tmp_path / 'forky'
    (root / 'config').mkdir(parents=True)
    (root / 'config' / 'extra.json').write_text('{"StableAge": 30}')
    orthanc = ContainerOrthanc(str(root), container_image('forky'), command=[
        '/usr/sbin/Orthanc', '/etc/orthanc/orthanc.json', '/etc/orthanc/extra.json'])
    try:
        orthanc.start()
        assert orthanc.api('GET', '/system')['Version'].startswith('1.13')
        for module, params in (('orthanc_info', {'service_name': orthanc.name}),
                               ('orthanc_backup', {'service_name': orthanc.name, 'repository': repository})):
            result, rc, output = ansible.run(module, params)
            assert rc != 0 and ('reads several configuration paths (/etc/orthanc/orthanc.json, /etc/orthanc/extra.json)'
                                in result['msg']), output
        assert orthanc.answers() and not os.path.exists(repository)
    finally:
        orthanc.remove()
