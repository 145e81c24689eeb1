# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import load
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import HASH_BATCH, make_dirs
from ansible_collections.orthanc_ops.backup.plugins.module_utils._info import masked_database
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import Ledger
from ansible_collections.orthanc_ops.backup.plugins.module_utils._manifest import LISTING, problems, read, write
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import (
    TABLES, StorageSnapshot, relative_path, scan_storage, storage_uuids)

UUIDS = ['0a1b2c3d-0000', '0a1bffff-1111', 'ee00aaaa-2222']


def write_storage(root, contents):
    for uuid, data in contents.items():
        path = os.path.join(root, relative_path(uuid))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as handle:
            handle.write(data)


def list_storage(root):
    return dict((uuid, entry.stat(follow_symlinks=False).st_size) for uuid, entry in scan_storage(root))


def test_listing_takes_only_orthanc_files(tmp_path):
    write_storage(str(tmp_path), {UUIDS[0]: b'abc', UUIDS[1]: b'defg'})
    (tmp_path / 'index').write_bytes(b'sqlite')
    (tmp_path / 'zz').mkdir()
    assert list_storage(str(tmp_path)) == {UUIDS[0]: 3, UUIDS[1]: 4}


def test_snapshot_links_previous_copies_new_and_reconciles(tmp_path):
    live, previous, target = str(tmp_path / 'live'), str(tmp_path / 'prev' / 'storage'), str(tmp_path / 'new')
    write_storage(live, {UUIDS[0]: b'abc', UUIDS[1]: b'defg', UUIDS[2]: b'orphan'})
    write_storage(previous, {UUIDS[0]: b'abc'})
    os.mkdir(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(live, Ledger(str(tmp_path / 'ledger'), TABLES))
    snapshot.target_root, snapshot.previous_backup = target, os.path.dirname(previous)
    assert snapshot.list_live() == 3
    snapshot.load_previous([(UUIDS[0], 3, 'm0')])
    assert snapshot.plan() == {'files_to_link': 1, 'bytes_to_link': 3, 'files_to_copy': 2, 'bytes_to_copy': 10}
    snapshot.take()
    write_storage(live, {'ff000000-3333': b'late'})    # arrives after the first pass
    assert snapshot.hold([(UUIDS[0], 3, 'm0'), (UUIDS[1], 4, 'other'), ('ff000000-3333', 4, None),
                          ('ab000000-4444', 1, None)]) == 4
    assert snapshot.reconcile() == ['ab000000-4444']
    assert sorted(list_storage(target)) == sorted([UUIDS[0], UUIDS[1], 'ff000000-3333'])
    assert [uuid for uuid, size, md5 in snapshot.entries()] == sorted([UUIDS[0], UUIDS[1], 'ff000000-3333'])
    assert snapshot.mismatches() == [UUIDS[1]] and snapshot.orphans() == 1
    assert list(snapshot.absent_from_live(10)) == ['ab000000-4444']
    linked = os.stat(os.path.join(target, relative_path(UUIDS[0])))
    assert linked.st_ino == os.stat(os.path.join(previous, relative_path(UUIDS[0]))).st_ino
    copied = os.stat(os.path.join(target, relative_path(UUIDS[1])))
    assert copied.st_ino != os.stat(os.path.join(live, relative_path(UUIDS[1]))).st_ino
    assert copied.st_mode & 0o777 == 0o600
    assert snapshot.bytes_linked == 3 and snapshot.bytes_copied == 4 + 4
    snapshot.ledger.close()


def test_what_the_previous_backup_does_not_hold_as_listed_is_copied_from_live(tmp_path):
    """The previous backup is untrusted: a file there that is missing, of another size, a symbolic link, or in a
    folder that is a symbolic link is not linked (nor followed), and the live file is copied instead."""
    live, previous, target = str(tmp_path / 'live'), str(tmp_path / 'prev' / 'storage'), str(tmp_path / 'new')
    contents = {'0a000000-0000': b'kept', '0a000000-1111': b'missing', '0a000000-2222': b'resized',
                '0a000000-3333': b'symlink', 'bb000000-4444': b'behind a linked folder'}
    write_storage(live, contents)
    write_storage(previous, dict((uuid, contents[uuid]) for uuid in ['0a000000-0000', '0a000000-2222']))
    os.truncate(os.path.join(previous, relative_path('0a000000-2222')), 3)
    outside = tmp_path / 'outside'
    outside.write_bytes(b'symlink')    # the listed size, so only the link itself can give it away
    os.symlink(str(outside), os.path.join(previous, relative_path('0a000000-3333')))
    write_storage(str(tmp_path / 'elsewhere'), {'bb000000-4444': contents['bb000000-4444']})
    os.mkdir(os.path.join(previous, 'bb'))
    os.symlink(str(tmp_path / 'elsewhere' / 'bb' / '00'), os.path.join(previous, 'bb', '00'))
    os.mkdir(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(live, Ledger(str(tmp_path / 'ledger'), TABLES))
    snapshot.target_root, snapshot.previous_backup = target, os.path.dirname(previous)
    assert snapshot.list_live() == 5
    snapshot.load_previous((uuid, len(data), hashlib.md5(data).hexdigest()) for uuid, data in contents.items())
    snapshot.take()
    snapshot.hold((uuid, len(data), hashlib.md5(data).hexdigest()) for uuid, data in contents.items())
    assert snapshot.reconcile() == [] and snapshot.mismatches() == []
    assert snapshot.unlinkable == 4
    assert snapshot.bytes_linked == 4 and snapshot.bytes_copied == sum(map(len, contents.values())) - 4
    kept = os.path.join(previous, relative_path('0a000000-0000'))
    for uuid, data in contents.items():
        taken = os.path.join(target, relative_path(uuid))
        assert not os.path.islink(taken) and open(taken, 'rb').read() == data
        assert (os.stat(taken).st_ino == os.stat(kept).st_ino) == (uuid == '0a000000-0000')
    assert os.stat(str(outside)).st_nlink == 1
    snapshot.ledger.close()


def test_a_previous_backup_whose_storage_folder_is_a_link_gives_nothing(tmp_path):
    live, elsewhere, target = str(tmp_path / 'live'), str(tmp_path / 'elsewhere'), str(tmp_path / 'new')
    write_storage(live, {UUIDS[0]: b'abc'})
    write_storage(elsewhere, {UUIDS[0]: b'xyz'})    # the listed size, other bytes
    os.mkdir(str(tmp_path / 'prev'))
    os.symlink(elsewhere, str(tmp_path / 'prev' / 'storage'))
    os.mkdir(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(live, Ledger(str(tmp_path / 'ledger'), TABLES))
    snapshot.target_root, snapshot.previous_backup = target, str(tmp_path / 'prev')
    snapshot.list_live()
    snapshot.load_previous([(UUIDS[0], 3, hashlib.md5(b'abc').hexdigest())])
    snapshot.take()
    assert snapshot.unlinkable == 1 and snapshot.bytes_linked == 0
    assert open(os.path.join(target, relative_path(UUIDS[0])), 'rb').read() == b'abc'
    snapshot.ledger.close()


def test_snapshot_of_many_files_taken_by_several_processes(tmp_path):
    """Past HASH_BATCH files io_workers processes list and take them: each file linked or copied as one process
    would."""
    live, previous, target = str(tmp_path / 'live'), str(tmp_path / 'prev' / 'storage'), str(tmp_path / 'new')
    uuids = ['%08x-%04d' % (number * 2654435761 % 2**32, number) for number in range(3 * HASH_BATCH)]
    contents = dict((uuid, uuid.encode() * (number % 3 + 1)) for number, uuid in enumerate(uuids))
    write_storage(live, contents)
    old = uuids[::2]
    write_storage(previous, dict((uuid, contents[uuid]) for uuid in old))
    outside = tmp_path / 'outside'
    outside.write_bytes(b'not an attachment')
    planted, gone = uuids[1], uuids[3]
    os.unlink(os.path.join(live, relative_path(planted)))
    os.symlink(str(outside), os.path.join(live, relative_path(planted)))
    os.mkdir(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(live, Ledger(str(tmp_path / 'ledger'), TABLES))
    snapshot.target_root, snapshot.previous_backup = target, os.path.dirname(previous)
    assert snapshot.list_live() == len(uuids) - 1    # the symbolic link is not listed
    # In uuid order, as the ledger takes them fastest.
    assert list(storage_uuids(live)) == sorted(set(uuids) - set([planted]))
    snapshot.load_previous((uuid, len(contents[uuid]), hashlib.md5(contents[uuid]).hexdigest()) for uuid in old)
    swapped = uuids[5]    # replaced by a symbolic link after the listing
    os.unlink(os.path.join(live, relative_path(gone)))    # deleted after the listing
    os.unlink(os.path.join(live, relative_path(swapped)))
    os.symlink(str(outside), os.path.join(live, relative_path(swapped)))
    snapshot.take()
    assert [uuid for uuid, in snapshot.db.execute('SELECT uuid FROM not_regular')] == [swapped]
    snapshot.hold((uuid, len(data), hashlib.md5(data).hexdigest()) for uuid, data in contents.items())
    assert snapshot.reconcile() == sorted([planted, gone, swapped])
    assert list(snapshot.absent_from_live(10)) == sorted([planted, swapped])    # gone was a regular file
    assert snapshot.mismatches() == []
    kept = sorted(set(uuids) - set([planted, gone, swapped]))
    assert [uuid for uuid, size, md5 in snapshot.entries()] == kept
    assert list_storage(target) == dict((uuid, len(contents[uuid])) for uuid in kept)
    for uuid in kept:
        taken = os.stat(os.path.join(target, relative_path(uuid)))
        source = os.stat(os.path.join(previous if uuid in old else live, relative_path(uuid)))
        assert (taken.st_ino == source.st_ino) == (uuid in old)
    assert snapshot.bytes_linked == sum(len(contents[uuid]) for uuid in old)
    assert snapshot.bytes_copied == sum(len(contents[uuid]) for uuid in kept if uuid not in old)
    snapshot.ledger.close()


def test_manifest_problems(tmp_path):
    (tmp_path / 'config').mkdir()
    (tmp_path / 'config' / 'a').write_bytes(b'hello')
    (tmp_path / 'config' / 'b').write_bytes(b'hellO')
    hello = '5d41402abc4b2a76b9719d911017c592'
    write(str(tmp_path), {'status': 'complete', 'format': 2, 'backup_id': 'x', 'counts': {}},
          [('config/a', 5, hello), ('config/b', 5, hello), ('config/c', 1, '0' * 32)])
    manifest = read(str(tmp_path))
    found = problems(str(tmp_path), manifest)
    assert sorted(found) == ['config/b has MD5 %s, expected %s' % (hashlib.md5(b'hellO').hexdigest(), hello),
                             'config/c is missing'] and found.count == 2
    assert problems(str(tmp_path), manifest, check_md5=False) == ['config/c is missing']
    assert problems(str(tmp_path), manifest, keep=1).count == 2
    asked = []
    assert problems(str(tmp_path), manifest, check_md5=False, stop=lambda: asked.append(1) or len(asked) > 2) == []
    assert len(asked) == 3    # stopped before config/c, the third entry


def test_repository_lists_complete_backups_and_locks(tmp_path):
    repository = Repository(str(tmp_path), 'pacs')
    repository.lock('backup')
    for name in ('20260101T000000Z', '20260102T000000Z.partial', '20260103T000000Z', 'notes'):
        os.mkdir(os.path.join(repository.path, name))
    write(repository.backup_path('20260101T000000Z'),
          {'status': 'complete', 'backup_id': '20260101T000000Z', 'instance': 'pacs', 'counts': {}}, [])
    assert repository.backup_ids() == ['20260101T000000Z']
    assert list(repository.rejected) == ['20260103T000000Z']
    other = Repository(str(tmp_path), 'pacs')
    with pytest.raises(OrthancOpsError, match='Instance "pacs" .* is busy: .*backup by pid %d' % os.getpid()):
        other.lock('prune')
    assert repository.clean_partials() == ['20260102T000000Z.partial']
    repository.unlock()
    with other.locked('prune'):
        pass


def test_links_planted_in_the_repository_are_never_followed(tmp_path):
    """A link named as a backup is no backup, and a link named as a partial copy is removed, not written
    through: whatever they point to stays as it was."""
    repository = Repository(str(tmp_path), 'pacs')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (elsewhere / 'manifest.json').write_text('{}')
    make_dirs(repository.path)
    for name in ('20260101T000000Z', '20260102T000000Z.partial', '20260103T000000Z.partial'):
        os.symlink(str(elsewhere), os.path.join(repository.path, name))
    assert repository.backup_ids() == []
    partial = repository.fresh_partial('20260102T000000Z')
    assert not os.path.islink(partial) and os.listdir(partial) == [] and os.stat(partial).st_mode & 0o777 == 0o700
    with repository.locked('backup'):
        assert sorted(repository.clean_partials()) == ['20260102T000000Z.partial', '20260103T000000Z.partial']
    assert sorted(os.listdir(repository.path)) == ['.lock', '20260101T000000Z']
    assert os.listdir(str(elsewhere)) == ['manifest.json']


def test_a_pinned_backup_is_told_apart_and_a_pin_left_by_a_killed_run_is_cleaned(tmp_path):
    repository = Repository(str(tmp_path), 'pacs')
    make_dirs(repository.path)
    with repository.pinned('20260101T000000Z', 'off-site push'):
        assert repository.is_pinned('20260101T000000Z') and not repository.is_pinned('20260102T000000Z')
        (tmp_path / 'pacs' / '.pinned-20260102T000000Z').write_text('push by pid 1')    # nobody holds it
        with repository.locked('prune'):
            assert repository.clean_partials() == ['.pinned-20260102T000000Z']
        assert repository.is_pinned('20260101T000000Z')
    assert not repository.is_pinned('20260101T000000Z')
    assert os.listdir(repository.path) == ['.lock']
    # A link planted as the pin is refused, and what it points to is left as it was.
    (tmp_path / 'elsewhere').write_text('keep')
    os.symlink(str(tmp_path / 'elsewhere'), os.path.join(repository.path, '.pinned-20260101T000000Z'))
    with pytest.raises(OrthancOpsError, match='Cannot use the repository .*pinned-20260101T000000Z'):
        with repository.pinned('20260101T000000Z', 'off-site push'):
            pass
    assert (tmp_path / 'elsewhere').read_text() == 'keep' and not repository.is_pinned('20260101T000000Z')


def test_backups_gone_since_the_record_are_found_and_the_record_is_untrusted_input(tmp_path):
    repository = Repository(str(tmp_path), 'pacs')
    assert repository.disappeared(['20260101T000000Z']) == []
    make_dirs(repository.path)
    repository.record_held(['20260101T000000Z', '20260102T000000Z', '20260103T000000Z'])
    assert repository.disappeared(['20260103T000000Z', '20260104T000000Z']) == ['20260101T000000Z', '20260102T000000Z']
    (tmp_path / 'pacs' / '.held.json').write_text(json.dumps(['../x', 7, {'a': 1}, '20260102T000000Z']))
    assert repository.disappeared([]) == ['20260102T000000Z']
    (tmp_path / 'pacs' / '.held.json').write_text('{"not": "a list"}')
    assert repository.disappeared([]) == []


def test_a_latest_backup_whose_listing_fails_as_it_is_loaded_is_skipped_for_an_older_one(tmp_path):
    """The backup reads the latest backup's listing once, into its ledger: a listing found damaged at its end is
    skipped as an unreadable manifest is, and nothing of it stays in the ledger."""
    warnings = []
    repository = Repository(str(tmp_path), 'pacs', warnings.append)
    for backup_id, uuid in (('20260101T000000Z', UUIDS[0]), ('20260102T000000Z', UUIDS[1])):
        os.makedirs(repository.backup_path(backup_id))
        write(repository.backup_path(backup_id), {'status': 'complete', 'backup_id': backup_id, 'counts': {}},
              [('storage/%s/%s/%s' % (uuid[0:2], uuid[2:4], uuid), 3, 'a' * 32)])
    with open(os.path.join(repository.backup_path('20260102T000000Z'), LISTING), 'ab') as listing:
        listing.write(b'\0')
    os.mkdir(str(tmp_path / 'ledger'))
    snapshot = StorageSnapshot(str(tmp_path), Ledger(str(tmp_path / 'ledger'), TABLES))

    def load(manifest):
        snapshot.load_previous((relative.rsplit('/', 1)[1], size, md5) for relative, size, md5 in manifest.entries())

    backup_id, manifest = repository.latest(load)
    assert backup_id == '20260101T000000Z' and manifest['backup_id'] == backup_id
    assert snapshot.db.execute('SELECT uuid FROM previous').fetchall() == [(UUIDS[0],)]
    assert len(warnings) == 1 and 'is not the one it was written with' in warnings[0]
    snapshot.ledger.close()


@pytest.mark.parametrize('bad', ['', '../x', '.hidden', 'a/b', 'pacs\n1', 'a\\b', '-rf', '   ', 'a#b', 'a?b', 'a%b',
                                 'a b', '..'])
def test_instance_must_be_a_folder_name(tmp_path, bad):
    with pytest.raises(OrthancOpsError, match='cannot name a backup folder'):
        Repository(str(tmp_path), bad)


def test_repository_must_be_absolute():
    with pytest.raises(OrthancOpsError, match='not an absolute path'):
        Repository('backups', 'pacs')


@pytest.mark.parametrize('settings, index, storage', [
    ({}, 'sqlite', 'filesystem'),
    ({'PostgreSQL': {'EnableIndex': True}}, 'postgresql', 'filesystem'),
    ({'PostgreSQL': {'EnableIndex': False, 'EnableStorage': False}}, 'sqlite', 'filesystem'),
    ({'MySQL': {'EnableIndex': True, 'EnableStorage': True}}, 'mysql', 'mysql'),
    ({'Odbc': {'EnableIndex': True}}, 'plugin', 'filesystem'),
])
def test_backend_detection(tmp_path, settings, index, storage):
    (tmp_path / 'o.json').write_text(json.dumps(settings))
    config = load(str(tmp_path / 'o.json'))
    assert registry.index_backend(config)[0] == index and registry.storage_backend(config)[0] == storage


def test_unsupported_backend_and_two_index_plugins(tmp_path):
    (tmp_path / 'o.json').write_text('{"Odbc": {"EnableIndex": true}}')
    with pytest.raises(OrthancOpsError, match='The Orthanc index is in plugin'):
        registry.for_config(None, load(str(tmp_path / "o.json")))
    (tmp_path / 'o.json').write_text('{"MySQL": {"EnableIndex": true}, "PostgreSQL": {"EnableIndex": true}}')
    with pytest.raises(OrthancOpsError, match='several plugin sections'):
        registry.index_backend(load(str(tmp_path / 'o.json')))


def test_database_passwords_are_masked():
    masked = masked_database({'Host': 'db', 'Password': 's3cret', 'Other': 1,
                              'ConnectionUri': 'postgresql://orthanc:s3cret@db:5432/orthanc?password=s3cret'})
    assert 's3cret' not in repr(masked) and masked['Host'] == 'db' and 'Other' not in masked


@pytest.mark.parametrize('uri, kept', [
    ("host=db password='my secret pw' dbname=orthanc", 'dbname=orthanc'),
    (r"host=db PASSWORD = 'my \' secret pw' user=orthanc", 'user=orthanc'),
    ('host=db password=my-secret-pw user=orthanc', 'user=orthanc'),
    ('postgresql://db/orthanc?sslmode=require&password=my-secret-pw&user=orthanc', '&user=orthanc'),
])
def test_keyword_form_passwords_are_masked_whole(uri, kept):
    masked = masked_database({'ConnectionUri': uri})['ConnectionUri']
    assert 'secret' not in masked and 'pw' not in masked and masked.endswith(kept), masked
