# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The SQLite index copy taken ahead and brought up to date: byte for byte the live files, whatever
changed, grew, shrank or vanished in between."""

from __future__ import annotations

import os
import sqlite3

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.sqlite import SQLiteBackend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import CHUNK, copy_file, refresh_copy


class Config:
    def __init__(self, index_dir):
        self.index_dir = index_dir


@pytest.mark.parametrize('before, after', [
    (b'a' * (3 * CHUNK), b'a' * CHUNK + b'b' * 10 + b'a' * (2 * CHUNK - 10)),   # one chunk changed
    (b'a' * (2 * CHUNK), b'a' * (3 * CHUNK + 5)),                                # grown
    (b'a' * (3 * CHUNK), b'c' * 7),                                              # shrunk
    (b'', b'xyz'),
])
def test_a_refreshed_copy_equals_the_source(tmp_path, before, after):
    (tmp_path / 'live').write_bytes(before)
    copy_file('live', str(tmp_path / 'copy'), beneath=str(tmp_path))
    (tmp_path / 'live').write_bytes(after)
    assert refresh_copy('live', str(tmp_path / 'copy'), beneath=str(tmp_path)) == len(after)
    assert (tmp_path / 'copy').read_bytes() == after


def test_a_refresh_never_writes_through_a_planted_link(tmp_path):
    (tmp_path / 'live').write_bytes(b'new')
    (tmp_path / 'victim').write_bytes(b'keep')
    os.symlink(str(tmp_path / 'victim'), str(tmp_path / 'copy'))
    with pytest.raises(OSError):
        refresh_copy('live', str(tmp_path / 'copy'), beneath=str(tmp_path))
    assert (tmp_path / 'victim').read_bytes() == b'keep'


def test_the_index_copy_follows_the_live_files(tmp_path):
    live, target = tmp_path / 'live', tmp_path / 'backup' / 'index'
    live.mkdir()
    (tmp_path / 'backup').mkdir()
    (live / 'index').write_bytes(b'db' * 1000)
    (live / 'index-wal').write_bytes(b'wal')
    (live / 'index-shm').write_bytes(b'shm')
    backend = SQLiteBackend(None, Config(str(live)))
    backend.prepare(str(tmp_path / 'backup'))
    assert sorted(os.listdir(str(target))) == ['index', 'index-wal']    # never the -shm
    (live / 'index').write_bytes(b'dB' * 1500)
    os.unlink(str(live / 'index-wal'))    # checkpointed away meanwhile
    (target / 'index-shm').write_bytes(b'left by a reader')
    backend._copy(str(target))
    assert sorted(os.listdir(str(target))) == ['index'] and (target / 'index').read_bytes() == b'dB' * 1500


def orthanc_like(path):
    """A connection holding the database at ``path`` as Orthanc holds its index (WAL, exclusive locking), with
    no automatic checkpoint: the test says when the database file changes."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript('PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; '
                     'CREATE TABLE t (n INTEGER PRIMARY KEY, data BLOB);')
    return db


def insert(db, numbers):
    db.execute('BEGIN')
    db.executemany('INSERT INTO t VALUES (?, randomblob(3000))', [(number,) for number in numbers])
    db.execute('COMMIT')


def rows(db):
    return db.execute('SELECT n, hex(data) FROM t ORDER BY n').fetchall()


@pytest.mark.parametrize('restarted', [False, True], ids=['checkpointed', 'wal-restarted'])
def test_the_frozen_copy_reads_only_the_wal_while_it_holds_every_change(tmp_path, restarted):
    """A checkpoint after the copy ahead changes the database file, and the frames it copied stay in the WAL:
    the database file copied ahead is kept, the WAL copied over it. Once the WAL restarts (a write after a full
    checkpoint), those frames are gone, and the database file is copied again."""
    live, backup = tmp_path / 'live', tmp_path / 'backup'
    live.mkdir()
    backup.mkdir()
    db = orthanc_like(str(live / 'index'))
    insert(db, range(0, 300))
    backend = SQLiteBackend(None, Config(str(live)))
    backend.prepare(str(backup))
    ahead = (backup / 'index' / 'index').read_bytes()
    insert(db, range(300, 600))
    db.execute('PRAGMA wal_checkpoint(PASSIVE)')    # the database file changes; the WAL keeps its frames
    if restarted:
        insert(db, range(600, 700))
    assert (live / 'index').read_bytes() != ahead
    backend._copy(str(backup / 'index'), backend._ahead)
    assert ((backup / 'index' / 'index').read_bytes() == ahead) is not restarted
    backend._fold_wal(str(backup / 'index' / 'index'))
    copy = sqlite3.connect(str(backup / 'index' / 'index'))
    assert rows(copy) == rows(db) and len(rows(db)) == (700 if restarted else 600)
    copy.close()
    db.close()
