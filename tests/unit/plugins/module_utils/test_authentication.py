# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Signed manifests, and the folders a repository lists as backups: whoever can write the repository but holds
no key chooses neither what is used nor what a prune keeps."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._authentication import BackupKey
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._manifest import NAME, read, write
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import kept

KEY = BackupKey('k' * 32)
UUID = '0123abcd-0000-4000-8000-000000000001'
STORAGE = 'storage/01/23/' + UUID


def make_backup(repository, backup_id, key=KEY, instance='pacs', files=((STORAGE, 3, 'a' * 32),)):
    folder = repository.backup_path(backup_id)
    os.makedirs(folder)
    write(folder, {'status': 'complete', 'backup_id': backup_id, 'instance': instance, 'counts': {}}, list(files),
          key=key)
    return folder


def rewrite(folder, change):
    with open(os.path.join(folder, NAME)) as handle:
        values = json.load(handle)
    change(values)
    with open(os.path.join(folder, NAME), 'w') as handle:
        json.dump(values, handle)


def test_a_manifest_signed_by_the_key_reads_and_any_change_is_refused(tmp_path):
    repository = Repository(str(tmp_path), 'pacs', key=KEY)
    folder = make_backup(repository, '20260101T000000Z')
    assert read(folder, key=KEY).authenticated and not read(folder).authenticated
    rewrite(folder, lambda values: values['counts'].update(instances=1))
    with pytest.raises(OrthancOpsError, match='not authenticated by backup_key: its signature does not match'):
        read(folder, key=KEY)
    other = make_backup(repository, '20260102T000000Z', key=BackupKey('o' * 32))
    with pytest.raises(OrthancOpsError, match='signed with another key \\(key id [0-9a-f]{16}; this backup_key'):
        read(other, key=KEY)
    unsigned = make_backup(repository, '20260103T000000Z', key=None)
    with pytest.raises(OrthancOpsError, match='it is not signed'):
        read(unsigned, key=KEY)


def test_a_short_key_is_refused():
    with pytest.raises(OrthancOpsError, match='backup_key has 5 characters; give one of at least 16'):
        BackupKey('short')


@pytest.mark.parametrize('key', [KEY, None])
def test_planted_folders_are_neither_listed_nor_pruned(tmp_path, key):
    """The prune of issue 32: a planted 'newest' backup made keep_last 1 remove every real one."""
    warnings = []
    repository = Repository(str(tmp_path), 'pacs', warnings.append, key=key)
    real = ['20260101T000000Z', '20260102T000000Z']
    for backup_id in real:
        make_backup(repository, backup_id, key=key)
    make_backup(repository, '29991231T235959Z', key=key)                       # a time to come
    make_backup(repository, '20260103T000000Z', key=key, instance='other')     # another instance's
    os.makedirs(repository.backup_path('20260104T000000Z'))
    with open(os.path.join(repository.backup_path('20260104T000000Z'), NAME), 'w') as handle:
        handle.write('[' * 100000 + ']' * 100000)                              # nested past the parser
    make_backup(repository, '20260105T000000Z', key=key)
    rewrite(repository.backup_path('20260105T000000Z'), lambda values: values.update(backup_id='20260101T000000Z'))
    assert repository.backup_ids() == real
    assert sorted(repository.rejected) == ['20260103T000000Z', '20260104T000000Z', '20260105T000000Z',
                                           '29991231T235959Z']
    assert 'a time to come' in repository.rejected['29991231T235959Z']
    assert "instance 'other'" in repository.rejected['20260103T000000Z']
    assert 'nests too deep' in repository.rejected['20260104T000000Z']
    assert len(warnings) == 4 and all('left alone' in warning for warning in warnings)
    assert sorted(kept(repository.backup_ids(), keep_last=1)) == ['20260102T000000Z']
    assert repository.latest()[0] == '20260102T000000Z'
    with pytest.raises(OrthancOpsError, match='Backup "29991231T235959Z" .* cannot be used: its id is a time to come'):
        repository.open_backup('29991231T235959Z')


def test_with_a_key_an_unsigned_backup_is_left_alone(tmp_path):
    repository = Repository(str(tmp_path), 'pacs', key=KEY)
    make_backup(repository, '20260101T000000Z')
    make_backup(repository, '20260102T000000Z', key=None)
    assert repository.backup_ids() == ['20260101T000000Z'] and repository.latest()[0] == '20260101T000000Z'
    assert repository.rejected == {'20260102T000000Z': 'it is not authenticated by backup_key: it is not signed'}


def test_without_a_key_only_backups_nobody_else_can_write_are_believed(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    repository = Repository(str(tmp_path), 'pacs')
    kept, planted = (make_backup(repository, backup_id, key=None) for backup_id in ('20260101T000000Z',
                                                                                    '20260102T000000Z'))
    os.chown(planted, 65534, 65534)    # as the account that can write there would have made it
    repository = Repository(str(tmp_path), 'pacs')
    assert repository.backup_ids() == ['20260101T000000Z'] and repository.latest()[0] == '20260101T000000Z'
    assert repository.rejected['20260102T000000Z'].endswith('belongs to uid 65534')
    os.chmod(repository.path, 0o777)
    with pytest.raises(OrthancOpsError, match='not authenticated .no backup_key. and others can change it: .*pacs may '
                                              'be written by others'):
        read(kept)
    assert Repository(str(tmp_path), 'pacs').counted_ids() == []


@pytest.mark.parametrize('change, message', [
    (lambda values: values.update(files=0), 'hold more than the 0 files the manifest says'),
    (lambda values: values.update(bytes=10 ** 12), 'hold 3 bytes, the manifest says 1000000000000'),
    (lambda values: values['storage_listing'].update(size=10 ** 9), 'size differs'),
])
def test_listings_that_claim_more_than_they_hold_are_refused_as_they_are_read(tmp_path, change, message):
    repository = Repository(str(tmp_path), 'pacs')
    folder = make_backup(repository, '20260101T000000Z', key=None)
    rewrite(folder, change)
    with pytest.raises(OrthancOpsError, match=message):
        read(folder)
