# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc as it is really deployed: configuration values from ${NAME}, read from the environment of
the Orthanc that runs, else from the task's environment; secrets from variables stay secret."""

from __future__ import annotations

import json
import os

import pytest

from harness import PostgresDatabase, complete_backups, listed_files, make_instances, read_manifest

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


@pytest.fixture
def variable_storage(make_orthanc, tmp_path):
    """An Orthanc whose storage folder (and so its SQLite index) is named only by ${ORTHANC_STORAGE}."""
    storage = str(tmp_path / 'storage-from-a-variable')
    orthanc = make_orthanc(settings={'StorageDirectory': '${ORTHANC_STORAGE}'},
                           environment={'ORTHANC_STORAGE': storage})
    orthanc.storage_dir = orthanc.index_dir = storage
    orthanc.upload(make_instances(patients=2))
    return orthanc, storage


def test_backup_and_restore_with_the_storage_folder_from_a_variable(variable_storage, ansible, repository):
    orthanc, storage = variable_storage
    before = orthanc.md5s()
    info, rc, output = ansible.run('orthanc_info', {'config': orthanc.config})
    assert rc == 0 and info['storage_dir'] == storage, output

    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    assert backup['live_missing_count'] == 0
    files = listed_files(backup['path'])
    assert read_manifest(backup['path'])['storage_dir'] == storage and 'index/index' in files
    assert sum(name.startswith('storage/') for name in files) == len(before)

    orthanc.wipe()
    params = orthanc.module_params(repository=repository, instance='pacs')
    refused, rc, output = ansible.run('orthanc_restore', params)
    assert rc != 0 and '${ORTHANC_STORAGE}' in refused['msg'] and "this module's environment" in refused['msg']
    assert not os.path.exists(storage)

    # Orthanc is not running: the task's environment names the folder.
    restored, rc, output = ansible.run('orthanc_restore', params, environment={'ORTHANC_STORAGE': storage})
    assert rc == 0 and restored['backup_id'] == backup['backup_id'], output
    orthanc.start()
    assert orthanc.md5s() == before


def test_a_default_value_is_used_as_orthanc_uses_it(make_orthanc, ansible, tmp_path):
    storage = str(tmp_path / 'default-storage')
    orthanc = make_orthanc(settings={'StorageDirectory': '${UNSET_STORAGE_VARIABLE:-%s}' % storage})
    info, rc, output = ansible.run('orthanc_info', {'config': orthanc.config})
    assert rc == 0 and info['storage_dir'] == storage, output


def test_a_database_password_from_a_variable_stays_secret(make_database, make_orthanc, ansible, repository):
    database = make_database(PostgresDatabase, False)
    settings = database.orthanc_settings()
    settings['PostgreSQL']['Password'] = '${ORTHANC_DB_PASSWORD}'
    orthanc = make_orthanc(settings=settings, environment={'ORTHANC_DB_PASSWORD': database.password})
    orthanc.upload(make_instances(patients=1))
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'),
                                     verbosity=3)
    assert rc == 0, output
    assert database.password not in output and database.password not in json.dumps(backup)
    for current, dummy, names in os.walk(repository):
        for name in names:
            with open(os.path.join(current, name), 'rb') as handle:
                assert database.password.encode() not in handle.read(), name
    assert complete_backups(repository) == [backup['backup_id']]


def test_the_manifest_says_what_wrote_the_backup_and_a_restore_needs_as_much(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    manifest_path = os.path.join(backup['path'], 'manifest.json')
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    system = orthanc.api('GET', '/system')
    assert manifest['orthanc_version'] == system['Version'] and manifest['database_version'] == system['DatabaseVersion']
    assert isinstance(manifest['plugins'], dict)

    manifest['database_version'] = system['DatabaseVersion'] + 1
    manifest['plugins']['postgresql-index'] = '99.0'    # not loaded here: not compared
    with open(manifest_path, 'w') as handle:
        json.dump(manifest, handle)
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'database schema version %d, the backup has %d' % (
        system['DatabaseVersion'], system['DatabaseVersion'] + 1) in result['msg'], output
    assert 'Upgrade Orthanc' in result['msg'] and 'postgresql-index' not in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == live
