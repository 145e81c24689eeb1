# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The SQLite index copy taken ahead and brought up to date: byte for byte the live files, whatever
changed, grew, shrank or vanished in between."""

from __future__ import annotations

import os

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
    assert backend._copy(str(target)) == {'index': 3000}
    assert sorted(os.listdir(str(target))) == ['index'] and (target / 'index').read_bytes() == b'dB' * 1500
