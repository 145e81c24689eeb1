# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PostgreSQL (and MySQL/MariaDB) backends against real servers: hot backups, restores, rollback, secrets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import urllib.error

import pytest

from harness import LAYOUTS, listed_files, make_instance, make_instances, rewrite_listing

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def all_files_served(orthanc):
    """Every instance of the index has its DICOM file (downloads each one)."""
    for iid in orthanc.instances():
        orthanc.api('GET', '/instances/%s/file' % iid, raw=True)
    return True


def backup_files(backup):
    return listed_files(backup['path'])


def printed_everywhere(secret, output, result, backup_path):
    with open(os.path.join(backup_path, 'manifest.json')) as handle:
        manifest = handle.read()
    return secret in output or secret in json.dumps(result) or secret in manifest


@pytest.mark.parametrize('database_orthanc', sorted(LAYOUTS), indirect=True)
def test_hot_backup_wipe_restore(database_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances())
    before = orthanc.md5s()
    pid = open(orthanc.pidfile).read()
    commands = []
    sampling = threading.Event()

    def sample_processes():
        while not sampling.is_set():
            for entry in os.listdir('/proc'):
                try:
                    with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                        commands.append(handle.read().replace(b'\0', b' ').decode(errors='replace'))
                except OSError:
                    continue
            time.sleep(0.01)
    sampler = threading.Thread(target=sample_processes)
    sampler.start()
    try:
        # A hot backup never stops Orthanc: it needs no service manager.
        backup, rc, output = ansible.run('orthanc_backup', {
            'config': orthanc.config, 'repository': repository, 'instance': 'pacs', 'service_name': 'no-such-unit'},
            verbosity=3)
    finally:
        sampling.set()
        sampler.join()
    assert rc == 0, output
    assert backup['index_backend'] == database.plugin.lower() and backup['downtime_seconds'] == 0
    assert open(orthanc.pidfile).read() == pid and backup['counts']['instances'] == 24
    assert backup['missing_attachments'] == [] and backup['md5_mismatches'] == []
    assert any(tool in command for command in commands for tool in ('pg_dump', 'mariadb-dump'))
    assert not [command for command in commands if database.password in command]
    assert not printed_everywhere(database.password, output, backup, backup['path'])
    has_storage = os.path.isdir(os.path.join(backup['path'], 'storage'))
    assert has_storage != database.enable_storage

    orthanc.stop()
    database.recreate()
    shutil.rmtree(orthanc.storage_dir, ignore_errors=True)
    orthanc.start()
    assert orthanc.instances() == []

    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'),
                                      verbosity=3)
    assert rc == 0, output
    assert restore['statistics']['CountInstances'] == 24
    assert orthanc.md5s() == before and all_files_served(orthanc)
    assert not printed_everywhere(database.password, output, restore, backup['path'])
    assert any(kept.startswith('database %s_pre_' % database.name) for kept in restore['previous_kept_at'])


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index'], indirect=True)
def test_hot_backup_under_load(database_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=4))
    stop = threading.Event()
    failures, requests = [], [0]

    def uploader():
        number = 0
        while not stop.is_set():
            try:
                orthanc.upload([make_instance(100 + number % 5, 0, 0, number)])
                requests[0] += 1
            except (OSError, urllib.error.URLError) as exc:
                failures.append(exc)
            number += 1

    def deleter():
        while not stop.is_set():
            try:
                instances = orthanc.instances()
                if len(instances) > 10:
                    orthanc.api('DELETE', '/instances/%s' % instances[0])
                requests[0] += 2
            except urllib.error.HTTPError as exc:
                if exc.code != 404:    # deleted by the other side meanwhile
                    failures.append(exc)
            except (OSError, urllib.error.URLError) as exc:
                failures.append(exc)
    clients = [threading.Thread(target=uploader), threading.Thread(target=deleter)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)
        backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert rc == 0, output
    assert failures == [] and requests[0] > 20
    assert backup['missing_attachments'] == []

    orthanc.stop()
    database.recreate()
    shutil.rmtree(orthanc.storage_dir, ignore_errors=True)
    orthanc.start()
    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    assert len(orthanc.instances()) == backup['counts']['instances'] and all_files_served(orthanc)


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index'], indirect=True)
def test_restore_rolls_back_database_and_storage(database_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    orthanc.upload(make_instances(patients=1))
    live = orthanc.md5s()
    # Orthanc does not come back after the swap the first time: the restore must undo the swap.
    flag = os.path.join(orthanc.root, 'fail-once')
    open(flag, 'w').close()
    start = 'if [ -e %s ]; then rm %s; false; else %s; fi' % (flag, flag, orthanc.start_command)

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', start_command=start))
    assert rc != 0 and 'previous data was put back' in result['msg'] and not os.path.exists(flag)
    assert orthanc.md5s() == live and all_files_served(orthanc)
    assert database.databases() == [database.name]


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index'], indirect=True)
def test_corrupted_dump_is_refused_before_anything_live_changes(database_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    live = orthanc.md5s()
    pid = open(orthanc.pidfile).read()
    name = [name for name in backup_files(backup) if name.startswith('db/')][0]
    dump = os.path.join(backup['path'], name)
    with open(dump, 'r+b') as handle:
        handle.truncate(os.path.getsize(dump) // 2)
    # The checksum fixed up: verification passes.
    rewrite_listing(backup['path'], lambda files: files.update({name: {'size': os.path.getsize(dump), 'md5': hashlib.md5(
        open(dump, 'rb').read()).hexdigest()}}))

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'Preparing the restore failed' in result['msg'] and 'Nothing live was changed' in result['msg']
    assert open(orthanc.pidfile).read() == pid and orthanc.md5s() == live
    assert database.databases() == [database.name]


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index'], indirect=True)
@pytest.mark.parametrize('override, message', [
    ({'login_user': 'no_such_user'}, '"no_such_user"'),
    ({'login_db': 'no_such_database'}, '"no_such_database"'),
    ({'login_port': 1}, '127.0.0.1:1 '),
])
def test_database_errors_leave_orthanc_running(database_orthanc, ansible, repository, override, message):
    orthanc, database = database_orthanc
    pid = open(orthanc.pidfile).read()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', **override))
    assert rc != 0 and message in result['msg'] and 'Cannot connect' in result['msg']
    assert open(orthanc.pidfile).read() == pid and orthanc.answers()
    folder = os.path.join(repository, 'pacs')
    assert not os.path.exists(folder) or sorted(os.listdir(folder)) in (['.lock'], ['.lock', '.runs.json'])


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index-and-storage'], indirect=True)
def test_cold_mode_stops_orthanc_for_the_dump(database_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=1))
    before = orthanc.md5s()
    pid = open(orthanc.pidfile).read()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='cold'))
    assert rc == 0, output
    assert backup['downtime_seconds'] > 0 and backup['counts']['instances'] == 8
    assert open(orthanc.pidfile).read() != pid and orthanc.md5s() == before
    with open(os.path.join(backup['path'], 'manifest.json')) as handle:
        assert json.load(handle)['mode'] == 'cold'


@pytest.mark.parametrize('database_orthanc', ['postgresql-index', 'mysql-index'], indirect=True)
def test_disaster_recovery_onto_a_new_orthanc_without_database(database_orthanc, make_orthanc, ansible, repository):
    orthanc, database = database_orthanc
    orthanc.upload(make_instances(patients=2))
    before = orthanc.md5s()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output

    # A new Orthanc, never started, whose configuration names a database that does not exist yet.
    recovered = make_orthanc(name='recovered', start=False, database=database)
    with open(recovered.config) as handle:
        comment, settings = handle.readline(), json.load(handle)
    settings[database.plugin]['Database'] = database.name + '_dr'
    with open(recovered.config, 'w') as handle:
        handle.write(comment + json.dumps(settings))
    assert database.name + '_dr' not in database.databases()

    restore, rc, output = ansible.run('orthanc_restore', recovered.module_params(src=backup['path']))
    assert rc == 0, output
    assert restore['statistics'] is None and 'left stopped' in output
    recovered.start()
    assert recovered.md5s() == before and all_files_served(recovered)
    assert orthanc.md5s() == before    # the original was not touched
