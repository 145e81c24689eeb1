# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_backup and orthanc_restore through their own main(), with a stand-in AnsibleModule (the pattern of
community.postgresql's unit tests): the argument spec is the module's, the configuration, SQLite index, storage
and repository are real files, and no Orthanc runs, so the phases must neither stop nor start one. The
integration tests do the same with real Orthanc servers through ansible-playbook."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

from ansible_collections.orthanc_ops.backup.plugins.modules import orthanc_backup, orthanc_restore
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import relative_path

# Orthanc's core schema, the part the backup reads: resources and their attachments.
SCHEMA = ('CREATE TABLE Resources(internalId INTEGER PRIMARY KEY, resourceType INTEGER, publicId TEXT, '
          'parentId INTEGER)',
          'CREATE TABLE AttachedFiles(id INTEGER, fileType INTEGER, uuid TEXT, compressedSize INTEGER, '
          'uncompressedSize INTEGER, compressionType INTEGER, uncompressedMD5 TEXT, compressedMD5 TEXT)')
INSTANCES = {'0a1b2c3d-0000-4000-8000-000000000001': b'first instance',
             'f0e1d2c3-0000-4000-8000-000000000002': b'second instance, a little longer'}
LATER = 'aa000000-0000-4000-8000-000000000003'


class Exited(Exception):
    """The module exited: ``failed``, its result, and the module (what it ran)."""

    def __init__(self, failed, result, module):
        super().__init__(result.get('msg'))
        self.failed, self.result, self.module = failed, result, module


class FakeModule:
    """The part of AnsibleModule the phases use. Its params are the argument spec's defaults and the test's
    values; every command it is asked to run is recorded and refused (no Orthanc runs here to stop or start)."""

    def __init__(self, argument_spec, supports_check_mode, **dummy):
        self.params = dict((name, spec.get('default')) for name, spec in argument_spec.items())
        self.params.update(FakeModule.given)
        self.check_mode = FakeModule.check_mode
        self.no_log_values, self.warnings, self.commands = set(), [], []
        self.tmpdir = FakeModule.tmpdir

    def run_command(self, argv, **dummy):
        self.commands.append(argv)
        return 1, '', 'no command runs in these tests'

    def get_bin_path(self, name, required=False):
        return None

    def warn(self, message):
        self.warnings.append(message)

    def exit_json(self, **result):
        raise Exited(False, result, self)

    def fail_json(self, **result):
        raise Exited(True, result, self)


@pytest.fixture
def orthanc(tmp_path, monkeypatch):
    """A stopped Orthanc's files: configuration, SQLite index and storage; and run(module, check_mode, **params)."""
    storage, index = tmp_path / 'storage', tmp_path / 'index'
    storage.mkdir()
    index.mkdir()
    config = tmp_path / 'orthanc.json'
    # Port 9 (discard): nothing listens there, so Orthanc is "not running".
    config.write_text(json.dumps({'StorageDirectory': str(storage), 'IndexDirectory': str(index), 'HttpPort': 9}))
    connection = sqlite3.connect(str(index / 'index'))
    for statement in SCHEMA:
        connection.execute(statement)
    for number, (uuid, data) in enumerate(sorted(INSTANCES.items()), 1):
        connection.execute('INSERT INTO Resources VALUES (?, 4, ?, NULL)', (number, 'instance-%d' % number))
        md5 = hashlib.md5(data).hexdigest()
        connection.execute('INSERT INTO AttachedFiles VALUES (?, 1, ?, ?, ?, 1, ?, ?)',
                           (number, uuid, len(data), len(data), md5, md5))
        path = storage / relative_path(uuid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    connection.commit()
    connection.close()
    monkeypatch.setattr(FakeModule, 'tmpdir', str(tmp_path), raising=False)

    def run(module, check_mode=False, **params):
        monkeypatch.setattr(module, 'AnsibleModule', FakeModule)
        monkeypatch.setattr(FakeModule, 'given', dict(config=str(config), service_manager='command',
                                                      stop_command='false', start_command='false',
                                                      repository=str(tmp_path / 'repository'), instance='t', **params),
                            raising=False)
        monkeypatch.setattr(FakeModule, 'check_mode', check_mode, raising=False)
        with pytest.raises(Exited) as exited:
            module.main()
        # No Orthanc ran: neither phase may have tried to stop or start one.
        assert not exited.value.module.commands
        return exited.value

    run.storage, run.index, run.repository = storage, index, tmp_path / 'repository'
    return run


def stored(storage):
    """{path relative to the storage: bytes} of the files Orthanc uses (a restore keeps the files it replaced in a
    hidden folder beside them)."""
    return dict((str(path.relative_to(storage)), path.read_bytes()) for path in storage.rglob('*')
                if path.is_file() and not str(path.relative_to(storage)).startswith('.'))


def test_check_mode_plans_a_backup_and_writes_nothing(orthanc):
    outcome = orthanc(orthanc_backup, check_mode=True)
    assert not outcome.failed, outcome.result['msg']
    plan = outcome.result['plan']
    assert plan['orthanc_running'] is False and plan['mode'] == 'freeze' and plan['previous_backup'] is None
    assert plan['bytes_to_copy'] >= sum(len(data) for data in INSTANCES.values())
    assert not orthanc.repository.exists()


def test_a_backup_of_a_stopped_orthanc_then_one_linking_every_unchanged_file(orthanc):
    first = orthanc(orthanc_backup)
    assert not first.failed, first.result['msg']
    assert first.result['counts']['instances'] == 2 and first.result['bytes_linked'] == 0
    manifest = json.loads((orthanc.repository / 't' / first.result['backup_id'] / 'manifest.json').read_text())
    assert manifest['status'] == 'complete'
    second = orthanc(orthanc_backup)
    assert not second.failed, second.result['msg']
    assert second.result['previous_backup'] == first.result['backup_id']
    assert second.result['bytes_linked'] == sum(len(data) for data in INSTANCES.values())


def test_a_file_the_index_references_missing_from_the_storage_fails_the_backup_and_keeps_nothing(orthanc):
    uuid = sorted(INSTANCES)[0]
    os.unlink(str(orthanc.storage / relative_path(uuid)))
    outcome = orthanc(orthanc_backup)
    assert outcome.failed and uuid in outcome.result['msg']
    assert not any(name for name in os.listdir(str(orthanc.repository / 't')) if not name.startswith('.'))


def test_a_restore_brings_every_file_back_and_keeps_the_replaced_ones(orthanc):
    backup_id = orthanc(orthanc_backup).result['backup_id']
    before = stored(orthanc.storage)
    for relative in before:
        os.unlink(str(orthanc.storage / relative))
    later = orthanc.storage / relative_path(LATER)
    later.parent.mkdir(parents=True)
    later.write_bytes(b'stored after the backup')
    outcome = orthanc(orthanc_restore)
    assert not outcome.failed, outcome.result['msg']
    assert outcome.result['backup_id'] == backup_id
    assert stored(orthanc.storage) == before
    assert any(os.path.isfile(os.path.join(kept, relative_path(LATER))) for kept in outcome.result['previous_kept_at'])


def test_a_restore_from_a_damaged_backup_changes_nothing(orthanc):
    backup_id = orthanc(orthanc_backup).result['backup_id']
    uuid = sorted(INSTANCES)[1]
    (orthanc.repository / 't' / backup_id / 'storage' / relative_path(uuid)).write_bytes(b'damaged')
    later = orthanc.storage / relative_path(LATER)
    later.parent.mkdir(parents=True)
    later.write_bytes(b'stored after the backup')
    live = stored(orthanc.storage)
    outcome = orthanc(orthanc_restore)
    assert outcome.failed and 'damaged' in outcome.result['msg'].lower()
    assert stored(orthanc.storage) == live
