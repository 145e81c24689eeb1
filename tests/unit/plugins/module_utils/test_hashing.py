# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Hashing and copying by two worker processes: the same results, in the same order, as in the module's own
process; taken once there are two runs of files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _files, _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    HASH_BATCH, IO_WORKERS, hash_tree, hashing_workers, io_workers, map_runs)

from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import is_storage_entry, relative_path
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import StagedDamage, stage_files

from test_untrusted import write_backup


# Files of a few dozen KB: large enough that a damaged byte sits in a later chunk of a read.
FILE_BYTES = 40 * 1024


def _squares(run):
    return [item * item for item in run]


def _failing(run):
    if HASH_BATCH in run:
        raise OSError('the disk went away')
    return run


@pytest.mark.parametrize('workers', [1, 2, 3])
def test_runs_worked_by_processes_come_back_whole_and_in_order(workers):
    items = list(range(5 * HASH_BATCH * workers + 7))    # more runs than may wait at once
    assert list(map_runs(_squares, iter(items), workers)) == [(item, item * item) for item in items]


def test_runs_are_worked_here_where_no_worker_can_be_started(monkeypatch):
    def no_semaphores(*args, **kwargs):
        raise OSError(38, 'Function not implemented')
    monkeypatch.setattr(_files, 'ProcessPoolExecutor', no_semaphores)
    items = list(range(3 * HASH_BATCH))
    assert list(map_runs(_squares, iter(items), 2)) == [(item, item * item) for item in items]


def test_a_failing_run_fails_the_caller():
    with pytest.raises(OSError, match='went away'):
        list(map_runs(_failing, iter(range(4 * HASH_BATCH)), 2))


@pytest.mark.usefixtures('small_runs')
def test_a_tree_hashed_by_two_workers_matches_one_and_follows_no_link(tmp_path):
    expected = {}
    for number in range(300):
        data = os.urandom(number * 97)
        relative = 'storage/%02x/file-%d' % (number % 16, number)
        os.makedirs(str(tmp_path / os.path.dirname(relative)), exist_ok=True)
        (tmp_path / relative).write_bytes(data)
        expected[relative] = hashlib.md5(data).hexdigest()
    os.symlink('/etc/hostname', str(tmp_path / 'storage' / '00' / 'link'))
    wanted = sorted(expected) + ['storage/00/link', 'storage/00/gone']
    sizes = dict((relative, (tmp_path / relative).stat().st_size) for relative in expected)
    one = list(hash_tree(str(tmp_path), ((relative, sizes.get(relative), None) for relative in wanted), 1))
    two = list(hash_tree(str(tmp_path), ((relative, sizes.get(relative), None) for relative in wanted), 2))
    assert one == two
    assert dict((relative, (size, md5)) for relative, dummy, size, md5 in two) == dict(
        dict((relative, (sizes[relative], md5)) for relative, md5 in expected.items()),
        **{'storage/00/link': (None, None), 'storage/00/gone': (None, None)})


def test_a_file_of_another_size_is_not_read(tmp_path):
    (tmp_path / 'file').write_bytes(b'0123456789')
    assert list(hash_tree(str(tmp_path), [('file', 9, 'payload')])) == [('file', 'payload', 10, None)]


def test_two_workers_take_two_runs_or_more_on_two_cores(monkeypatch):
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    assert [hashing_workers(files) for files in (0, HASH_BATCH, HASH_BATCH + 1, 10**6)] == [1, 1, 2, 2]
    monkeypatch.setattr(os, 'cpu_count', lambda: 1)
    assert hashing_workers(10**6) == 1


def test_work_that_waits_on_the_disk_takes_io_workers_whatever_the_cores(monkeypatch):
    monkeypatch.setattr(os, 'cpu_count', lambda: 1)
    assert [io_workers(files) for files in (0, HASH_BATCH, HASH_BATCH + 1, 10**6)] == [1, 1, IO_WORKERS, IO_WORKERS]


def test_problems_of_a_backup_are_found_by_two_workers(tmp_path, workers_used):
    used = workers_used(_manifest)
    contents = dict(('storage/' + relative_path('%02x%06d-0000-4000-8000-%012d' % (number, number, number)),
                     os.urandom(FILE_BYTES + number)) for number in range(40))
    manifest = write_backup(tmp_path, contents)
    assert _manifest.problems(str(tmp_path), manifest) == [] and used == [2]
    damaged = sorted(contents)[7]
    with open(str(tmp_path / damaged), 'r+b') as handle:
        handle.seek(FILE_BYTES // 2)
        handle.write(b'\0' if contents[damaged][FILE_BYTES // 2] else b'\1')
    now = hashlib.md5((tmp_path / damaged).read_bytes()).hexdigest()
    assert _manifest.problems(str(tmp_path), manifest) == [
        '%s has MD5 %s, expected %s' % (damaged, now, hashlib.md5(contents[damaged]).hexdigest())]


def _large_files(source, count):
    """{path: contents} of ``count`` storage files of FILE_BYTES or more written below ``source``, and
    their listing as stage_files takes it."""
    contents = dict((relative_path('%02x%06d-0000-4000-8000-%012d' % (number, number, number)),
                     os.urandom(FILE_BYTES + number)) for number in range(count))
    for relative, data in contents.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)
    return contents, [(relative, len(contents[relative]), hashlib.md5(contents[relative]).hexdigest())
                      for relative in sorted(contents)]


@pytest.mark.usefixtures('small_runs')
def test_staging_by_two_workers_copies_every_file_and_finds_a_damaged_one(tmp_path):
    source = tmp_path / 'backup'
    contents, listed = _large_files(source, 30)
    swap = stage_files(str(source), iter(listed), str(tmp_path / 'live'), 'storage', 'S1', is_storage_entry,
                       check_md5=True, workers=2)
    assert dict((relative, (Path(swap.staging) / relative).read_bytes()) for relative in contents) == contents
    swap.cleanup()
    damaged = sorted(contents)[11]
    (source / damaged).write_bytes(b'\0' * len(contents[damaged]))
    with pytest.raises(StagedDamage, match=damaged.rsplit('/', 1)[1]):
        stage_files(str(source), iter(listed), str(tmp_path / 'live'), 'storage', 'S2', is_storage_entry,
                    check_md5=True, workers=2)
    assert not [name for name in os.listdir(str(tmp_path / 'live')) if name.startswith('.orthanc-restore-')]


@pytest.mark.parametrize('planted', ['file', 'folder'])
@pytest.mark.usefixtures('small_runs')
def test_staging_by_two_workers_follows_no_planted_link(tmp_path, planted):
    """A listed file replaced by a link to a secret, or a listed folder replaced by a link to another tree: refused
    by the workers as in the module's own process, and nothing is left staged."""
    secret = tmp_path / 'secret'
    secret.write_bytes(os.urandom(FILE_BYTES))
    source = tmp_path / 'backup'
    contents, listed = _large_files(source, 20)
    if planted == 'file':
        linked = source / sorted(contents)[3]
        os.unlink(str(linked))
        os.symlink(str(secret), str(linked))
    else:
        folder = (source / sorted(contents)[15]).parent
        os.rename(str(folder), str(tmp_path / 'elsewhere'))
        os.symlink(str(tmp_path / 'elsewhere'), str(folder))
    with pytest.raises(OSError):
        stage_files(str(source), iter(listed), str(tmp_path / 'live'), 'storage', 'S3', is_storage_entry,
                    check_md5=True, workers=2)
    assert not [name for name in os.listdir(str(tmp_path / 'live')) if name.startswith('.orthanc-restore-')]
