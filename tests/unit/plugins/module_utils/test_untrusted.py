# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A backup folder and the storage folder are untrusted input: paths, links, modes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from uuid import uuid4

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _lock, _manifest, _proc, _sandbox, _service
from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import load
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    TreeReader, UnsafePath, copy_file, folder_beneath, make_dirs, open_regular)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import (
    STAGING_PREFIX, FolderSwap, StagedDamage, _own, stage_files)

UUID = 'ab12cdef-0000-4000-8000-000000000001'
STORAGE_KEY = 'storage/ab/12/' + UUID


@pytest.mark.parametrize('key, valid', [
    (STORAGE_KEY, True),
    ('index/index', True),
    ('config/orthanc.json', True),
    ('db/orthanc.dump/toc.dat', True),
    ('storage/index', False),                         # the SQLite index planted in the storage area
    ('storage/ab/12/cd000000-0000', False),           # a file in a folder that does not match its name
    ('storage/../../etc/hostname', False),
    ('/etc/shadow', False),
    ('config/../../etc/shadow', False),
    ('config//x', False),
    ('manifest.json', False),
    ('secrets/x', False),
    ('index', False),
])
def test_manifest_keys(key, valid):
    assert _manifest.valid_key(key) is valid


HEADER = {'status': 'complete', 'backup_id': '20260101T000000Z', 'counts': {}}


def write_backup(folder, contents, format_1=False, format_2=False, **manifest):
    """A backup holding ``contents`` ({path: bytes}) with its manifest: format 3 as backups write it, format 2
    (every file a JSON line) as backups of 0.2.x did, or format 1 (files inside manifest.json) as backups of
    0.1.0 did; ``manifest`` overrides keys of any."""
    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for relative, data in contents.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        listed[relative] = {'size': len(data), 'md5': hashlib.md5(data).hexdigest()}
    ordered = sorted(listed, key=_manifest.sort_key)
    if format_1:
        values = dict(dict(HEADER, format=1, files=listed), **manifest)
        (folder / 'manifest.json').write_text(json.dumps(values))
    elif format_2:
        values = dict(dict(HEADER, format=2, files=len(listed), bytes=sum(len(data) for data in contents.values()),
                           listing={}), **manifest)
        (folder / 'manifest.json').write_text(json.dumps(values))
        rewrite_listing(folder, [line(relative, listed[relative]['size'], listed[relative]['md5'])
                                 for relative in ordered])
    else:
        _manifest.write(str(folder), dict(HEADER, **manifest),
                        [(relative, listed[relative]['size'], listed[relative]['md5']) for relative in ordered])
    return _manifest.read(str(folder))


@pytest.mark.parametrize('change, message', [
    ({'files': None}, 'has no "files" list'),
    ({'files': {'/etc/shadow': {'size': 1, 'md5': '0' * 32}}}, "'/etc/shadow' is not a path inside the backup"),
    ({'files': {'index/index': {'size': '1', 'md5': '0' * 32}}}, 'no valid size and MD5'),
    ({'counts': None}, 'no counts'),
])
def test_invalid_format_1_manifests_are_refused(tmp_path, change, message):
    with pytest.raises(OrthancOpsError, match=message):
        write_backup(tmp_path, {}, format_1=True, **change)


def rewrite_listing(folder, lines, key='listing'):
    """Replace a backup's listing (the one its manifest names under ``key``) by ``lines`` (bytes), and make
    its manifest name the new one: what an attacker who can write both would do."""
    listing = folder / _manifest.LISTING_KEYS[key]
    listing.write_bytes(gzip.compress(b''.join(lines)))
    values = json.loads((folder / 'manifest.json').read_text())
    data = listing.read_bytes()
    values[key].update(name=listing.name, size=len(data), md5=hashlib.md5(data).hexdigest())
    (folder / 'manifest.json').write_text(json.dumps(values))


def line(relative, size=1, md5='0' * 32):
    return json.dumps([relative, size, md5]).encode() + b'\n'


@pytest.mark.parametrize('lines, message', [
    ([line('/etc/shadow')], "'/etc/shadow' is not a path inside the backup"),
    ([line('config/../../etc/shadow')], 'is not a path inside the backup'),
    ([line('index/index', '1')], 'no valid size and MD5'),
    ([line('index/index', 1, 'not an md5')], 'no valid size and MD5'),
    ([b'{"path": "index/index"}\n'], 'is not \\[path, size, md5\\]'),
    ([line('index/index')[:-1]], 'is not \\[path, size, md5\\]'),
    ([b'x' * 100000 + b'\n'], 'is not \\[path, size, md5\\]'),
    ([line('index/index'), line('config/orthanc.json')], 'config/orthanc.json is listed out of order or twice'),
    ([line('index/index'), line('index/index')], 'out of order or twice'),
    ([line('config/a'), line('config/b')], 'listings hold more than the 1 files the manifest says'),
])
def test_listings_that_are_not_well_formed_are_refused(tmp_path, lines, message):
    write_backup(tmp_path, {'config/a': b'x'})
    rewrite_listing(tmp_path, lines)
    with pytest.raises(OrthancOpsError, match='manifest of .* is not valid: .*' + message):
        _manifest.read(str(tmp_path))


def test_a_listing_that_is_not_the_one_written_makes_the_backup_unusable(tmp_path):
    write_backup(tmp_path / 'a', {'config/a': b'a'})
    write_backup(tmp_path / 'b', {'config/a': b'b'})
    (tmp_path / 'a' / _manifest.LISTING).write_bytes((tmp_path / 'b' / _manifest.LISTING).read_bytes())
    with pytest.raises(OrthancOpsError, match='listing of files .* is not the one it was written with'):
        _manifest.read(str(tmp_path / 'a'))
    os.unlink(str(tmp_path / 'a' / _manifest.LISTING))
    with pytest.raises(OrthancOpsError, match='listing of files .* is missing'):
        _manifest.read(str(tmp_path / 'a'))
    os.symlink(str(tmp_path / 'b' / _manifest.LISTING), str(tmp_path / 'a' / _manifest.LISTING))
    with pytest.raises(OrthancOpsError, match='listing of files .* cannot be read'):
        _manifest.read(str(tmp_path / 'a'))


def test_a_listing_swapped_after_it_was_read_fails_its_reader(tmp_path):
    manifest = write_backup(tmp_path / 'a', {'config/a': b'a'})
    write_backup(tmp_path / 'b', {'config/a': b'b'})
    os.replace(str(tmp_path / 'b' / _manifest.LISTING), str(tmp_path / 'a' / _manifest.LISTING))
    with pytest.raises(OrthancOpsError, match='not the one it was written with'):
        list(manifest.entries())


def test_every_format_lists_the_same_entries_in_order(tmp_path):
    contents = {'storage/ab/12/' + UUID: b'dicom', 'index/index': b'sqlite', 'config/orthanc.json': b'{}',
                'config/orthanc.json.d/x.json': b'{}', 'config/orthanc-x.json': b'{}',
                'storage/ab/12/ab12-00ff': b'odd', 'storage/ff/00/ff00' + UUID[4:]: b'last'}
    formats = dict((number, write_backup(tmp_path / str(number), contents, format_1=number == 1,
                                         format_2=number == 2)) for number in (1, 2, 3))
    assert list(formats[1].entries()) == list(formats[2].entries()) == list(formats[3].entries())
    assert [entry[0] for entry in formats[3].entries()] == [
        'config/orthanc-x.json', 'config/orthanc.json', 'config/orthanc.json.d/x.json', 'index/index',
        'storage/ab/12/ab12-00ff', STORAGE_KEY, 'storage/ff/00/ff00' + UUID[4:]]
    assert list(formats[3].entries('index')) == [('index/index', 6, hashlib.md5(b'sqlite').hexdigest())]
    assert [entry[0] for entry in formats[3].entries('storage')][1:] == [STORAGE_KEY, 'storage/ff/00/ff00' + UUID[4:]]
    assert all((manifest['files'], manifest['bytes']) == (7, 24) for manifest in formats.values())
    # The storage files by uuid, as a backup reads its previous one: the same files, the odd one among the records.
    by_uuid = [(relative[len('storage/ab/12/'):], size, md5) for relative, size, md5 in formats[1].entries('storage')]
    assert [uuid for uuid, size, md5 in by_uuid] == ['ab12-00ff', UUID, 'ff00' + UUID[4:]]
    assert all(list(manifest.storage_files()) == by_uuid for manifest in formats.values())
    for number, manifest in formats.items():
        assert _manifest.problems(str(tmp_path / str(number)), manifest) == []
    # The odd name stays a JSON line; the uuids are records of the storage listing.
    assert sorted(os.listdir(str(tmp_path / '3'))) == [
        'config', 'index', 'manifest-files.jsonl.gz', 'manifest-storage.bin.gz', 'manifest.json', 'storage']
    with gzip.open(str(tmp_path / '3' / _manifest.STORAGE_LISTING)) as records:
        assert len(records.read()) == 2 * 40


def test_storage_files_written_by_uuid_are_listed_as_paths(tmp_path):
    other = [('config/orthanc.json', 2, '1' * 32), ('index/index', 6, '2' * 32)]
    storage = [('ab12-00ff', 3, '3' * 32), (UUID, 5, '4' * 32), ('ff00' + UUID[4:], 4, '5' * 32)]
    (tmp_path / 'by-uuid').mkdir()
    (tmp_path / 'by-path').mkdir()
    _manifest.write(str(tmp_path / 'by-uuid'), HEADER, other, storage)
    _manifest.write(str(tmp_path / 'by-path'), HEADER,
                    other + [(_manifest.storage_path(uuid), size, md5) for uuid, size, md5 in storage])
    for name in (_manifest.LISTING, _manifest.STORAGE_LISTING):
        assert (tmp_path / 'by-uuid' / name).read_bytes() == (tmp_path / 'by-path' / name).read_bytes()
    manifest = _manifest.read(str(tmp_path / 'by-uuid'))
    assert list(manifest.storage_files()) == storage
    assert [entry[0] for entry in manifest.entries()][2:] == [_manifest.storage_path(uuid) for uuid, s, m in storage]


@pytest.mark.parametrize('other, storage', [
    ([('storage/ff/00/ff00' + UUID[4:], 1, '0' * 32)], [(UUID, 1, '0' * 32)]),    # a storage file after
    ([], [('ff00' + UUID[4:], 1, '0' * 32), (UUID, 1, '0' * 32)]),
    ([], [(UUID, 1, '0' * 32), (UUID, 1, '0' * 32)]),
])
def test_storage_files_out_of_order_are_not_written(tmp_path, other, storage):
    with pytest.raises(ValueError, match='out of order'):
        _manifest.write(str(tmp_path), HEADER, other, storage)


def record(uuid, size=1, md5='0' * 32):
    return bytes.fromhex(uuid.replace('-', '')) + bytes.fromhex(md5) + size.to_bytes(8, 'little')


@pytest.mark.parametrize('records, message', [
    ([record(UUID)[:-1]], 'ends inside a record'),
    ([record('ff' + UUID[2:]), record(UUID)], 'is listed out of order or twice'),
    ([record(UUID), record(UUID)], 'is listed out of order or twice'),
    ([record(UUID), record('ff' + UUID[2:])], 'listings hold more than the 1 files the manifest says'),
])
def test_storage_listings_that_are_not_well_formed_are_refused(tmp_path, records, message):
    write_backup(tmp_path, {STORAGE_KEY: b'x'})
    rewrite_listing(tmp_path, records, key='storage_listing')
    with pytest.raises(OrthancOpsError, match='manifest of .* is not valid: .*' + message):
        _manifest.read(str(tmp_path))


def test_a_storage_file_in_both_listings_is_refused(tmp_path):
    write_backup(tmp_path, {STORAGE_KEY: b'x', 'index/index': b'y'})
    rewrite_listing(tmp_path, [line('index/index'), line(STORAGE_KEY)])
    with pytest.raises(OrthancOpsError, match='is listed out of order or twice'):
        _manifest.read(str(tmp_path))


@pytest.mark.parametrize('damage, message', [
    (os.unlink, 'listing of files .manifest-storage.bin.gz. is missing'),
    (lambda listing: open(listing, 'ab').write(b'\0'), 'is not the one it was written with'),
])
def test_a_damaged_storage_listing_makes_the_backup_unusable(tmp_path, damage, message):
    write_backup(tmp_path, {STORAGE_KEY: b'x'})
    damage(str(tmp_path / _manifest.STORAGE_LISTING))
    with pytest.raises(OrthancOpsError, match=message):
        _manifest.read(str(tmp_path))


def test_a_storage_listing_takes_under_40_bytes_per_file(tmp_path):
    count = 20000
    entries = sorted(('storage/%s/%s/%s' % (uuid[:2], uuid[2:4], uuid), 9000 + index % 1500,
                      hashlib.md5(uuid.encode()).hexdigest())
                     for index, uuid in enumerate(str(uuid4()) for dummy in range(count)))
    _manifest.write(str(tmp_path), HEADER, entries)
    assert os.path.getsize(str(tmp_path / _manifest.STORAGE_LISTING)) / count < 40
    assert list(_manifest.read(str(tmp_path)).entries()) == entries


def test_manifest_through_a_link_is_refused(tmp_path):
    write_backup(tmp_path / 'real', {})
    (tmp_path / 'backup').mkdir()
    os.symlink(str(tmp_path / 'real' / 'manifest.json'), str(tmp_path / 'backup' / 'manifest.json'))
    with pytest.raises(OrthancOpsError, match='Cannot read'):
        _manifest.read(str(tmp_path / 'backup'))


def test_problems_name_everything_the_manifest_does_not_list(tmp_path):
    manifest = write_backup(tmp_path, {STORAGE_KEY: b'dicom', 'index/index': b'sqlite'})
    (tmp_path / 'storage' / 'index').write_bytes(b'planted')
    os.symlink('/etc/hostname', str(tmp_path / 'storage' / 'ab' / 'link'))
    os.mkfifo(str(tmp_path / 'config-fifo'))
    found = _manifest.problems(str(tmp_path), manifest)
    assert found == ['config-fifo is not a regular file', 'storage/ab/link is a symbolic link',
                     'storage/index is not listed in the manifest']


@pytest.mark.parametrize('check_md5', [True, False])
def test_files_of_another_size_are_named_and_files_checked_later_are_left_to_their_caller(tmp_path, check_md5):
    manifest = write_backup(tmp_path, {STORAGE_KEY: b'dicom', 'index/index': b'sqlite'})
    (tmp_path / 'index' / 'index').write_bytes(b'sqlite, grown')
    (tmp_path / STORAGE_KEY).write_bytes(b'dicom' * 1000)
    assert _manifest.problems(str(tmp_path), manifest, check_md5=check_md5) == [
        'index/index has 13 bytes, expected 6', '%s has 5000 bytes, expected 5' % STORAGE_KEY]
    assert _manifest.problems(str(tmp_path), manifest, check_md5=check_md5, checked_later=('storage/',)) == [
        'index/index has 13 bytes, expected 6']


def test_a_sample_reads_only_the_files_it_picks_and_finds_a_backup_rewritten_whole(tmp_path):
    contents = dict(('storage/%s' % uuid[0:2] + '/%s/%s' % (uuid[2:4], uuid), uuid.encode())
                    for uuid in (str(uuid4()) for dummy in range(200)))
    manifest = write_backup(tmp_path, contents)
    assert _manifest.sampled_problems(str(tmp_path), manifest, 32) == []
    rewritten = sorted(contents)[:100]
    for relative in rewritten:
        (tmp_path / relative).write_bytes(b'encrypted: %s' % contents[relative])
    found = _manifest.sampled_problems(str(tmp_path), manifest, 200, keep=1000)
    assert sorted(problem.split()[0] for problem in found) == rewritten
    assert all(problem.endswith('bytes, expected 36') for problem in found)
    # Half the files rewritten: a sample of 32 misses them all once in 2**32 runs.
    assert 0 < _manifest.sampled_problems(str(tmp_path), manifest, 32).count <= 32
    (tmp_path / rewritten[0]).unlink()
    assert '%s cannot be read as a regular file' % rewritten[0] in _manifest.sampled_problems(
        str(tmp_path), manifest, 200, keep=1000)


def test_a_sample_of_the_storage_listing_decodes_only_its_picks_and_checks_the_listing_whole(tmp_path):
    records = sorted((str(uuid4()), size, hashlib.md5(b'%d' % size).hexdigest()) for size in range(1000))
    _manifest.write(str(tmp_path), HEADER, [('index/index', 6, '0' * 32)], records)
    manifest = _manifest.read(str(tmp_path))
    listed = set((_manifest.storage_path(uuid), size, md5) for uuid, size, md5 in records)
    listed.add(('index/index', 6, '0' * 32))
    picked = manifest.sample(50)
    assert len(set(picked)) == 50 and set(picked) <= listed
    assert set(manifest.sample(5000)) == listed
    listing = tmp_path / _manifest.STORAGE_LISTING
    listing.write_bytes(listing.read_bytes()[:-1])
    with pytest.raises(OrthancOpsError, match='not the one it was written with'):
        _manifest.read(str(tmp_path), checked=False).sample(1)


def test_a_sample_reads_the_listing_through_and_refuses_one_rewritten(tmp_path):
    manifest = write_backup(tmp_path, {STORAGE_KEY: b'dicom'})
    listing = tmp_path / _manifest.LISTING
    listing.write_bytes(gzip.compress(line(STORAGE_KEY, 6, hashlib.md5(b'dicom!').hexdigest())))
    with pytest.raises(OrthancOpsError, match='not the one it was written with'):
        _manifest.sampled_problems(str(tmp_path), manifest, 1)


def test_a_listed_file_replaced_by_a_link_is_missing_not_followed(tmp_path):
    manifest = write_backup(tmp_path, {'config/orthanc.json': b'{}'})
    os.unlink(str(tmp_path / 'config' / 'orthanc.json'))
    os.symlink('/etc/hostname', str(tmp_path / 'config' / 'orthanc.json'))
    assert _manifest.problems(str(tmp_path), manifest) == [
        'config/orthanc.json is a symbolic link', 'config/orthanc.json is missing']


def test_reads_beneath_a_folder_follow_no_link(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'file').write_bytes(b'x')
    os.symlink('real', str(tmp_path / 'folder-link'))
    os.symlink('real/file', str(tmp_path / 'file-link'))
    with open_regular('real/file', beneath=str(tmp_path)) as handle:
        assert handle.read() == b'x'
    for relative in ('folder-link/file', 'file-link'):
        with pytest.raises(OSError):
            open_regular(relative, beneath=str(tmp_path))
    for relative in ('../x', '/etc/hostname', 'real/../real/file'):
        with pytest.raises(UnsafePath):
            open_regular(relative, beneath=str(tmp_path))
    os.mkfifo(str(tmp_path / 'fifo'))
    with pytest.raises(UnsafePath, match='not a regular file'):
        open_regular('fifo', beneath=str(tmp_path))


def test_modes_are_exact_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        make_dirs(str(tmp_path / 'a' / 'b' / 'c'))
        (tmp_path / 'src').write_bytes(b'x')
        copy_file(str(tmp_path / 'src'), str(tmp_path / 'a' / 'copy'))
    finally:
        os.umask(old)
    for folder in ('a', 'a/b', 'a/b/c'):
        assert os.stat(str(tmp_path / folder)).st_mode & 0o777 == 0o700
    assert os.stat(str(tmp_path / 'a' / 'copy')).st_mode & 0o777 == 0o600


def test_staging_copies_only_listed_files_and_refuses_foreign_names(tmp_path):
    source, target = tmp_path / 'backup' / 'storage', tmp_path / 'live'
    write_backup(tmp_path / 'backup', {STORAGE_KEY: b'dicom'})
    (source / 'ab' / '12' / 'unlisted').write_bytes(b'x')
    target.mkdir()
    (target / 'index').write_bytes(b'live index')
    swap = stage_files(str(source), [('ab/12/' + UUID, 5, None)], str(target), 'storage', 'T', lambda name: len(name) == 2)
    assert sorted(os.listdir(os.path.join(swap.staging, 'ab', '12'))) == [UUID]
    swap.apply()
    assert (target / 'index').read_bytes() == b'live index'
    swap.undo()
    assert sorted(os.listdir(str(target))) == ['index']
    with pytest.raises(OrthancOpsError, match='holds index in .* must not put'):
        stage_files(str(source), [('index', 0, None)], str(target), 'storage', 'U', lambda name: len(name) == 2)


@pytest.mark.parametrize('found, problem', [
    (b'flips', 'has MD5 %s, expected %s' % (hashlib.md5(b'flips').hexdigest(), hashlib.md5(b'sound').hexdigest())),
    (b'sound' * 10**5, 'has 500000 bytes, expected 5')])
def test_staging_checks_each_copy_and_leaves_nothing_when_one_differs(tmp_path, found, problem):
    source, target = tmp_path / 'backup' / 'storage', tmp_path / 'live'
    other = 'ab13cdef-0000-4000-8000-000000000002'
    write_backup(tmp_path / 'backup', {STORAGE_KEY: b'dicom', 'storage/ab/13/' + other: found})
    target.mkdir()
    listed = [('ab/12/' + UUID, 5, hashlib.md5(b'dicom').hexdigest()), ('ab/13/' + other, 5, hashlib.md5(b'sound').hexdigest())]
    with pytest.raises(StagedDamage) as raised:
        stage_files(str(source), listed, str(target), 'storage', 'T', lambda name: len(name) == 2, check_md5=True)
    assert raised.value.problems == ['storage/ab/13/%s %s' % (other, problem)]
    assert os.listdir(str(target)) == []


def test_a_file_of_another_size_than_expected_is_not_copied(tmp_path):
    """A planted giant in place of a small listed file fills no disk."""
    (tmp_path / 'tree').mkdir()
    (tmp_path / 'tree' / 'file').write_bytes(b'0123456789')
    assert copy_file('file', str(tmp_path / 'copy'), beneath=str(tmp_path / 'tree'), size=9) == (10, None)
    assert not (tmp_path / 'copy').exists()
    assert copy_file('file', str(tmp_path / 'copy'), beneath=str(tmp_path / 'tree'), size=10) == (
        10, hashlib.md5(b'0123456789').hexdigest())


def test_a_tree_reader_follows_no_planted_folder_link_and_goes_on_after_one(tmp_path):
    (tmp_path / 'tree' / 'ab' / '12').mkdir(parents=True)
    (tmp_path / 'tree' / 'ab' / '12' / 'file').write_bytes(b'inside')
    (tmp_path / 'outside' / '13').mkdir(parents=True)
    (tmp_path / 'outside' / '13' / 'file').write_bytes(b'secret')
    os.symlink(str(tmp_path / 'outside'), str(tmp_path / 'tree' / 'cd'))
    os.symlink(str(tmp_path / 'outside' / '13'), str(tmp_path / 'tree' / 'ab' / '13'))
    with TreeReader(str(tmp_path / 'tree')) as tree:
        for planted in ('cd/13/file', 'ab/13/file', '../outside/13/file'):
            with pytest.raises(OSError):
                open_regular(planted, beneath=tree)
            with open_regular('ab/12/file', beneath=tree) as handle:
                assert handle.read() == b'inside'


def test_swap_never_replaces_an_entry_it_does_not_own(tmp_path):
    (tmp_path / 'live').mkdir()
    (tmp_path / 'live' / 'index').write_bytes(b'live index')
    swap = FolderSwap(str(tmp_path / 'live'), 'staging', 'aside', lambda name: len(name) == 2)
    with open(os.path.join(swap.staging, 'index'), 'wb') as handle:
        handle.write(b'planted')
    with pytest.raises(OrthancOpsError, match='does not own'):
        swap.apply()
    swap.undo()
    assert (tmp_path / 'live' / 'index').read_bytes() == b'live index'
    assert os.listdir(str(tmp_path / 'live')) == ['index']


def test_folders_beneath_a_root_are_made_like_it_and_reached_through_no_link(tmp_path):
    (tmp_path / 'storage').mkdir()
    (tmp_path / 'elsewhere').mkdir()
    os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / 'storage' / 'ab'))
    with pytest.raises(OSError):
        folder_beneath(str(tmp_path / 'storage'), 'ab/cd', 0o750, (65534, 65534))
    assert os.listdir(str(tmp_path / 'elsewhere')) == []
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    previous = os.umask(0o777)
    try:
        fd = folder_beneath(str(tmp_path / 'storage'), 'xy/zw', 0o750, (65534, 65534))
    finally:
        os.umask(previous)
    copy_file(__file__, 'copied', dir_fd=fd)
    os.close(fd)
    for folder in ('xy', 'xy/zw'):
        info = os.stat(str(tmp_path / 'storage' / folder))
        assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == ((0o750,) + owner)
    assert (tmp_path / 'storage' / 'xy' / 'zw' / 'copied').read_bytes() == open(__file__, 'rb').read()


def test_a_staged_folder_swapped_for_a_link_is_never_given_away(tmp_path):
    (tmp_path / 'elsewhere').mkdir()
    os.chmod(str(tmp_path / 'elsewhere'), 0o700)
    os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / 'made'))
    with pytest.raises(OSError):
        _own(str(tmp_path / 'made'), (65534, 65534), 0o777)
    info = os.stat(str(tmp_path / 'elsewhere'))
    assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())


def test_swap_keeps_nothing_through_a_link_planted_where_it_keeps_the_replaced_data(tmp_path):
    (tmp_path / 'live').mkdir()
    (tmp_path / 'live' / 'ab').mkdir()
    (tmp_path / 'elsewhere').mkdir()
    os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / 'live' / 'aside'))
    swap = FolderSwap(str(tmp_path / 'live'), 'staging', 'aside', lambda name: len(name) == 2)
    os.mkdir(os.path.join(swap.staging, 'ab'))
    with pytest.raises(OrthancOpsError, match='Something is already at .*aside.*nothing was replaced'):
        swap.apply()
    swap.undo()
    assert os.listdir(str(tmp_path / 'elsewhere')) == [] and os.path.isdir(str(tmp_path / 'live' / 'ab'))


@pytest.mark.parametrize('value', ['abc', 0, 70000, True, None, [8042]])
def test_http_port_must_be_a_port(tmp_path, value):
    (tmp_path / 'o.json').write_text(json.dumps({'HttpPort': value}))
    with pytest.raises(OrthancOpsError, match='HttpPort in the configuration .* not a TCP port'):
        load(str(tmp_path / 'o.json')).http_port


def test_the_per_orthanc_locks_live_in_a_folder_nobody_else_made(tmp_path, monkeypatch):
    """/run/lock is writable by every user: a folder planted there made every backup, restore and audit fail."""
    monkeypatch.setattr(_lock, 'RUN_DIR', str(tmp_path / 'run'))
    folder = tmp_path / 'run' / 'orthanc-ops'
    (tmp_path / 'run').mkdir()
    with _lock.orthanc_lock('/etc/orthanc', 'backup'):
        assert os.stat(str(folder)).st_mode & 0o777 == 0o700
    shutil.rmtree(str(folder))
    (tmp_path / 'elsewhere').mkdir(mode=0o700)
    os.symlink(str(tmp_path / 'elsewhere'), str(folder))
    with pytest.raises(OrthancOpsError, match='is not a folder that only this user can use .* someone else made it'):
        _lock.orthanc_lock('/etc/orthanc', 'backup')
    assert os.listdir(str(tmp_path / 'elsewhere')) == []
    os.unlink(str(folder))
    folder.mkdir()
    os.chmod(str(folder), 0o777)
    with pytest.raises(OrthancOpsError, match='is not a folder that only this user can use'):
        _lock.orthanc_lock('/etc/orthanc', 'backup')


@pytest.mark.parametrize('planted', ['owned by a user', 'in a folder anyone can write', 'run by a user'])
def test_a_program_named_orthanc_is_not_believed(tmp_path, planted):
    """Its environment would choose the database host a password goes to (issue 32, item 4)."""
    folder = tmp_path / 'bin'
    folder.mkdir(mode=0o755)
    os.chmod(str(tmp_path), 0o755)
    binary = folder / 'OrthancX'
    shutil.copy('/bin/sleep', str(binary))
    os.chmod(str(binary), 0o755)
    if planted == 'owned by a user':
        os.chown(str(binary), 65534, 65534)
    elif planted == 'in a folder anyone can write':
        os.chmod(str(folder), 0o777)
    user = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] if planted == 'run by a user' else []
    process = subprocess.Popen(user + [str(binary), '60'])
    try:
        for dummy in range(100):
            if os.path.basename(os.readlink('/proc/%d/exe' % process.pid)) == 'OrthancX':
                break
            time.sleep(0.01)
        assert os.path.basename(os.readlink('/proc/%d/exe' % process.pid)) == 'OrthancX'
        assert not _proc.is_orthanc(process.pid) and process.pid not in _proc.orthanc_pids()
        os.chmod(str(folder), 0o755)
        os.chown(str(binary), 0, 0)
        if not user:    # the same program, root's and in root's folder, run by root: believed
            assert _proc.is_orthanc(process.pid)
    finally:
        process.kill()
        process.wait()


def test_a_throwaway_orthanc_loads_only_the_hosts_own_plugins(tmp_path, monkeypatch):
    """A container's configuration naming a plugin folder on a volume had the sandbox, run as root, load it."""
    monkeypatch.setattr(_sandbox, 'HOST_PLUGINS', str(tmp_path))
    os.chmod(str(tmp_path), 0o755)
    for name in ('libOrthancPostgreSQLIndex.so', 'libOrthancPostgreSQLStorage.so', 'libOrthancMySQLIndex.so'):
        (tmp_path / name).write_bytes(b'\x7fELF')
        os.chmod(str(tmp_path / name), 0o644)
    assert _sandbox.plugin_libraries('OrthancPostgreSQL') == [
        str(tmp_path / 'libOrthancPostgreSQLIndex.so'), str(tmp_path / 'libOrthancPostgreSQLStorage.so')]
    os.chown(str(tmp_path / 'libOrthancPostgreSQLIndex.so'), 65534, 65534)
    os.chmod(str(tmp_path / 'libOrthancPostgreSQLStorage.so'), 0o666)
    with pytest.raises(OrthancOpsError, match='no OrthancPostgreSQL plugin in .* Install .*orthanc-postgresql'):
        _sandbox.plugin_libraries('OrthancPostgreSQL')


def as_orthanc_user(script, folder):
    """Run the shell ``script`` in ``folder`` as uid 65534, the Orthanc user that owns the live storage."""
    return subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script],
                          cwd=folder, capture_output=True, text=True, check=False)


def test_the_orthanc_user_cannot_steer_where_root_stages_a_restore(tmp_path):
    """Issue 32, item 2: the staging tree was the Orthanc user's before root wrote into it, so that user could put
    a link to /etc/cron.daily where root then created files. Between two staged files, the Orthanc user (who owns
    the live folder) tries to enter the staging folder, then renames it away and plants a link at its name."""
    other = 'cd34cdef-0000-4000-8000-000000000002'
    source, target, elsewhere = tmp_path / 'backup' / 'storage', tmp_path / 'live', tmp_path / 'elsewhere'
    write_backup(tmp_path / 'backup', {STORAGE_KEY: b'dicom', 'storage/cd/34/' + other: b'other'})
    for folder in (tmp_path, target, elsewhere):
        folder.mkdir(exist_ok=True)
        os.chmod(str(folder), 0o755)
    for folder in (target, elsewhere):
        os.chown(str(folder), 65534, 65534)
    attempts = []

    def files():
        yield 'ab/12/' + UUID, 5, None
        staging = [name for name in os.listdir(str(target)) if name.startswith(STAGING_PREFIX)][0]
        attempts.append(as_orthanc_user('ls %s/ab' % staging, str(target)))
        attempts.append(as_orthanc_user('mv %s moved && ln -s %s %s' % (staging, elsewhere, staging), str(target)))
        yield 'cd/34/' + other, 5, None

    swap = stage_files(str(source), files(), str(target), 'storage', 'T', lambda name: len(name) == 2)
    assert 'Permission denied' in attempts[0].stderr and attempts[1].returncode == 0
    swap.apply()
    swap.discard()
    assert os.listdir(str(elsewhere)) == []
    for relative, data in (('ab/12/' + UUID, b'dicom'), ('cd/34/' + other, b'other')):
        assert (target / relative).read_bytes() == data and os.stat(str(target / relative)).st_uid == 65534
    # What the Orthanc user renamed is root's, private and empty; nothing else of the restore is left.
    assert sorted(os.listdir(str(target))) == sorted(['ab', 'cd', 'moved', swap.name])
    assert os.listdir(str(target / 'moved')) == [] and os.stat(str(target / 'moved')).st_mode & 0o777 == 0o700


def test_held_processes_are_signalled_through_their_pidfd_only_while_they_live():
    """Issue 32, item 9: a pid read earlier and signalled later may belong to another process by then."""
    sleeper, other = subprocess.Popen(['sleep', '60']), subprocess.Popen(['sleep', '60'])
    try:
        with _proc.Held([sleeper.pid, other.pid, 2 ** 22 + 1], lambda pid: pid != other.pid) as held:
            assert held.pids == [sleeper.pid]    # the other one is not accepted, the last one never lived
            assert held.signal(signal.SIGSTOP) == [sleeper.pid]
            deadline = time.monotonic() + 5
            while not _proc.all_stopped(sleeper.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _proc.state(sleeper.pid) == 'T'
            assert _proc.state(other.pid) != 'T'
            held.signal(signal.SIGCONT)
            sleeper.kill()
            sleeper.wait()    # reaped: its pid may now be anyone's
            assert held.signal(signal.SIGSTOP) == []
    finally:
        for process in (sleeper, other):
            process.kill()
            process.wait()


def test_the_watchers_orders_are_not_on_its_command_line():
    """Issue 32, item 11: every local user can read a process's argv, and the start command may hold a secret."""
    with _proc.Held([os.getpid()], lambda pid: True) as orthanc:
        token = _service.arm_watcher(start=['/bin/sh', '-c', 'echo secret-start-9731'], orthanc=orthanc)
    try:
        seen, deadline = [], time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if b'spec = json.loads' in argv:
                    seen.append(argv)
            time.sleep(0.01)
        assert seen and not any(b'secret-start-9731' in argv for argv in seen)
    finally:
        _service.dismiss_watcher(token)


def test_a_restore_stages_under_any_umask(tmp_path):
    source, target = tmp_path / 'backup' / 'storage', tmp_path / 'live'
    write_backup(tmp_path / 'backup', {STORAGE_KEY: b'dicom'})
    target.mkdir()
    previous = os.umask(0o777)
    try:
        swap = stage_files(str(source), [('ab/12/' + UUID, 5, None)], str(target), 'storage', 'T',
                           lambda name: len(name) == 2)
        assert os.stat(swap.staging).st_mode & 0o777 == 0o700
        swap.apply()
        swap.discard()
    finally:
        os.umask(previous)
    assert (target / 'ab' / '12' / UUID).read_bytes() == b'dicom' and os.listdir(str(target)) == ['ab']


def _folders(tmp_path, *modes):
    """Nested folders a/b/... under tmp_path, one per mode, made with exactly those modes."""
    path = tmp_path
    for name, mode in zip('abcdef', modes):
        path = path / name
        path.mkdir()
        os.chmod(str(path), mode)
    return str(path)


@pytest.mark.parametrize('modes, owner, culprit', [
    ((0o755, 0o700), None, None),
    ((0o1777, 0o700), None, None),                      # a sticky folder on the way, as /tmp
    ((0o777, 0o700), None, 'a may be written by others (mode 0777)'),
    ((0o775, 0o700), None, 'a may be written by its group (mode 0775)'),
    ((0o755, 0o1777), None, 'b may be written by others (mode 1777)'),    # the folder itself
    ((0o755, 0o700), 'a', 'a belongs to uid 65534'),
    ((0o1777, 0o700), 'b', 'b belongs to uid 65534'),
])
def test_a_folder_is_only_ours_when_nobody_else_can_write_on_the_way_to_it(tmp_path, modes, owner, culprit):
    from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import others_can_write
    os.chmod(str(tmp_path), 0o700)
    target = _folders(tmp_path, *modes)
    if owner:
        os.chown(str(tmp_path / owner) if owner == 'a' else target, 65534, 65534)
    problem = others_can_write(target)
    assert (problem is None) if culprit is None else problem.endswith(culprit)


def test_a_link_on_the_way_is_followed_and_judged_with_the_folders_it_leads_through(tmp_path):
    from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import others_can_write
    os.chmod(str(tmp_path), 0o700)
    real = _folders(tmp_path, 0o777, 0o700)            # a/b, a open to everyone
    (tmp_path / 'safe').mkdir(mode=0o700)
    os.symlink('../a/b', str(tmp_path / 'safe' / 'link'))
    assert others_can_write(str(tmp_path / 'safe' / 'link')).endswith('a may be written by others (mode 0777)')
    os.chmod(os.path.dirname(real), 0o755)
    assert others_can_write(str(tmp_path / 'safe' / 'link')) is None
    sticky = tmp_path / 'sticky'
    sticky.mkdir()
    os.chmod(str(sticky), 0o1777)
    os.symlink(real, str(sticky / 'theirs'))
    os.lchown(str(sticky / 'theirs'), 65534, 65534)    # its owner may replace it, sticky or not
    assert others_can_write(str(sticky / 'theirs')).endswith('theirs belongs to uid 65534')


def test_the_kept_runs_are_untrusted_input_and_at_most_the_last_400(tmp_path):
    from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import RUNS, Repository
    repository = Repository(str(tmp_path), 'pacs')
    repository.record_run({'started': '20261201T010000Z', 'status': 'complete'})
    assert repository.runs() == []    # no instance folder yet: nothing is made for it
    os.makedirs(repository.path)
    with open(os.path.join(repository.path, RUNS), 'w') as handle:
        json.dump([{'started': '20261201T010000Z', 'status': 'complete', 'bytes': 10},
                   {'started': '../../etc', 'status': 'complete'}, {'started': '20261202T010000Z', 'status': 'lost'},
                   {'started': '20261203T010000Z', 'status': 'failed', 'bytes': True}, 'text'], handle)
    assert repository.runs() == [{'started': '20261201T010000Z', 'status': 'complete', 'bytes': 10}]
    for day in range(1, 500):
        repository.record_run({'started': '2026%04dT010000Z' % (1200 + day % 28 + 1), 'status': 'failed'})
    assert len(repository.runs()) == 400 and len(repository.runs(since='20261228T000000Z')) < 400
    os.rename(os.path.join(repository.path, RUNS), str(tmp_path / 'elsewhere.json'))
    os.symlink(str(tmp_path / 'elsewhere.json'), os.path.join(repository.path, RUNS))
    assert repository.runs() == []    # a link is not followed
