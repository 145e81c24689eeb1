# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_info, check mode, incremental backups and the packaged sysvinit service."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request

import pytest

from harness import PASSWORD, listed_files, make_instances


def test_info_reads_config_and_rest(make_orthanc, ansible):
    orthanc = make_orthanc(layout='folder', compression=True)
    orthanc.upload(make_instances(patients=1))
    with open(os.path.join(orthanc.config, 'postgresql.json'), 'w') as handle:
        handle.write('{ // index in PostgreSQL\n "PostgreSQL": {"EnableIndex": false, "Password": "pg-secret-42"}}')
    info, rc, output = ansible.run('orthanc_info', {'config': orthanc.config}, verbosity=3)
    assert rc == 0, output
    assert info['index_backend'] == 'sqlite' and info['storage_backend'] == 'filesystem'
    assert info['storage_dir'] == orthanc.storage_dir and info['storage_compression'] is True
    assert info['http_port'] == orthanc.port and info['running'] is True
    assert info['version'] and info['statistics']['CountInstances'] == 8
    assert PASSWORD not in output and PASSWORD not in json.dumps(info)


def test_info_masks_database_passwords(tmp_path, ansible):
    config = tmp_path / 'orthanc.json'
    config.write_text('{"HttpPort": 1, "PostgreSQL": {"EnableIndex": true, "EnableStorage": true, "Host": "db", '
                      '"Password": "pg-secret-42", "ConnectionUri": "postgresql://orthanc:pg-secret-42@db/orthanc"}}')
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)}, verbosity=3)
    assert rc == 0, output
    assert info['index_backend'] == 'postgresql' and info['storage_backend'] == 'postgresql'
    assert info['database']['Host'] == 'db' and info['running'] is False
    assert 'pg-secret-42' not in output and 'pg-secret-42' not in json.dumps(info)


@pytest.mark.parametrize('section, lacking', [
    ('PostgreSQL', ['command pg_dump', 'command pg_restore', 'command rsync']),
    ('MySQL', ['command mariadb-dump or mysqldump', 'command mariadb or mysql', 'command rsync']),
])
def test_info_reports_what_the_host_lacks(tmp_path, ansible, section, lacking):
    """With no client tools on PATH, the roles learn what to install; with them, nothing is missing."""
    config = tmp_path / 'orthanc.json'
    config.write_text('{"HttpPort": 1, "%s": {"EnableIndex": true}}' % section)
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)}, environment={'PATH': str(tmp_path)})
    assert rc == 0 and info['missing_requirements'] == lacking, output
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)})
    assert rc == 0 and info['missing_requirements'] == [], output


@pytest.mark.parametrize('content, message', [
    ('{"HttpPort": 8042,, }', 'is not valid JSON'),
    ('[1, 2]', 'does not hold a JSON object'),
])
def test_info_rejects_bad_configuration(tmp_path, ansible, content, message):
    config = tmp_path / 'orthanc.json'
    config.write_text(content)
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)})
    assert rc != 0 and message in info['msg'] and str(config) in info['msg']


def test_key_in_two_files_is_refused(tmp_path, ansible):
    (tmp_path / 'a.json').write_text('{"HttpPort": 8042}')
    (tmp_path / 'b.json').write_text('/* again */ {"HttpPort": 8043}')
    info, rc, output = ansible.run('orthanc_backup', {'config': str(tmp_path), 'repository': str(tmp_path / 'r')})
    assert rc != 0 and '"HttpPort" is defined in both' in info['msg']
    assert not os.path.exists(tmp_path / 'r')


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


@pytest.fixture
def packaged_orthanc():
    """The Debian package's Orthanc: /etc/orthanc, /var/lib/orthanc/db-v6, /etc/init.d/orthanc, port 8042."""
    storage = '/var/lib/orthanc/db-v6'
    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=False, capture_output=True)
    saved = storage + '.before-tests'
    if os.path.exists(storage):
        shutil.move(storage, saved)
    os.makedirs(storage)
    shutil.chown(storage, 'orthanc', 'orthanc')
    subprocess.run(['/etc/init.d/orthanc', 'start'], check=True, capture_output=True)
    yield storage
    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=False, capture_output=True)
    shutil.rmtree(storage, ignore_errors=True)
    if os.path.exists(saved):
        shutil.move(saved, storage)


def packaged_md5s():
    def get(path):
        with urllib.request.urlopen('http://127.0.0.1:8042' + path, timeout=30) as response:
            return response.read()
    return dict((iid, get('/instances/%s/attachments/dicom/md5' % iid).decode())
                for iid in json.loads(get('/instances')))


def wait_packaged():
    for dummy in range(600):
        try:
            return packaged_md5s()
        except OSError:
            subprocess.run(['sleep', '0.05'], check=True)
    raise AssertionError('the packaged Orthanc did not answer on 8042')


@pytest.mark.exclusive
def test_packaged_orthanc_through_sysvinit(packaged_orthanc, ansible, repository):
    wait_packaged()
    for data in make_instances(patients=2):
        request = urllib.request.Request('http://127.0.0.1:8042/instances', data=data, method='POST')
        urllib.request.urlopen(request, timeout=30).close()
    before = packaged_md5s()
    assert len(before) == 16
    backup, rc, output = ansible.run('orthanc_backup', {'repository': repository, 'service_manager': 'sysvinit'})
    assert rc == 0, output
    assert backup['counts']['instances'] == 16 and packaged_md5s() == before

    subprocess.run(['/etc/init.d/orthanc', 'stop'], check=True, capture_output=True)
    for name in os.listdir(packaged_orthanc):
        path = os.path.join(packaged_orthanc, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    subprocess.run(['/etc/init.d/orthanc', 'start'], check=True, capture_output=True)
    assert wait_packaged() == {}

    restore, rc, output = ansible.run('orthanc_restore', {'repository': repository, 'service_manager': 'sysvinit',
                                                          'keep_previous': False})
    assert rc == 0, output
    assert packaged_md5s() == before and restore['previous_kept_at'] == []
    owners = set(os.stat(os.path.join(d, f)).st_uid for d, dummy, files in os.walk(packaged_orthanc) for f in files)
    assert owners == {os.stat(packaged_orthanc).st_uid}


def test_stopped_orthanc_is_backed_up_and_left_stopped(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    orthanc.stop()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository))
    assert rc == 0, output
    assert result['downtime_seconds'] == 0 and result['counts']['instances'] == 8
    assert not orthanc.answers()


def test_orthanc_that_does_not_stop(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    pid = open(orthanc.pidfile).read()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='cold', stop_command='true', stop_timeout=2))
    assert rc != 0 and 'did not stop within 2 s' in result['msg']
    assert orthanc.answers() and open(orthanc.pidfile).read() == pid
    assert os.listdir(os.path.join(repository, 'pacs')) == ['.lock']


def test_rest_password_never_printed(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    params = orthanc.module_params(repository=repository, url=orthanc.url, url_username='admin', url_password=PASSWORD)
    result, rc, output = ansible.run('orthanc_backup', params, verbosity=3)
    assert rc == 0, output
    with open(os.path.join(result['path'], 'manifest.json')) as handle:
        manifest = handle.read()
    assert PASSWORD not in output and PASSWORD not in json.dumps(result) and PASSWORD not in manifest


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
    assert os.listdir(os.path.join(repository, socket.gethostname())) == ['.lock'] and orthanc.answers()

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
