# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _audit
from ansible_collections.orthanc_ops.backup.plugins.module_utils._audit import TABLES, add_late_files, classify
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import Ledger
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import relative_path


def ledger_of(tmp_path, on_disk, referenced):
    """A ledger holding ``on_disk`` ({uuid: (size, mtime)}) and ``referenced`` ({uuid: (size, md5)})."""
    folder = tmp_path / 'ledger'
    folder.mkdir()
    ledger = Ledger(str(folder), TABLES)
    ledger.fill('disk', ((uuid, size, mtime) for uuid, (size, mtime) in on_disk.items()))
    ledger.fill('referenced', ((uuid, size, md5, 'instances/i', 'dicom') for uuid, (size, md5) in referenced.items()))
    return ledger


def test_classify_sorts_files_into_orphans_young_missing_and_damaged(tmp_path):
    storage = tmp_path / 'storage'

    def stored(uuid, data):
        path = storage / relative_path(uuid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)
    md5 = hashlib.md5(b'abc').hexdigest()
    planted = stored('ee000000-planted', b'abc')
    os.unlink(planted)
    os.symlink(stored('0a000000-sound', b'abc'), planted)    # a link where Orthanc writes files: never followed
    stored('ff000000-flipped', b'abd')
    on_disk = {'0b000000-old-orphan': (10, 100.0), '0c000000-young-orphan': (10, 900.0), '0a000000-sound': (3, 100.0),
               '0d000000-short': (2, 100.0), 'ff000000-flipped': (3, 100.0), 'ee000000-planted': (3, 100.0)}
    referenced = {'0a000000-sound': (3, md5), '0d000000-short': (3, md5), 'ff000000-flipped': (3, md5),
                  'ee000000-planted': (3, md5), '0e000000-gone': (7, '0' * 32)}
    ledger = ledger_of(tmp_path, on_disk, referenced)
    orphans, young, missing, damaged = classify(ledger, cutoff=500.0, check_md5=True, storage_dir=str(storage))
    assert orphans == [{'uuid': '0b000000-old-orphan', 'size': 10,
                        'path': str(storage / relative_path('0b000000-old-orphan'))}] and young == 1
    assert missing == [{'uuid': '0e000000-gone', 'size': 7, 'md5': '0' * 32, 'resource': 'instances/i',
                        'attachment': 'dicom'}]
    assert [(entry['uuid'], entry['problem']) for entry in damaged] == [
        ('0d000000-short', '2 bytes, Orthanc recorded 3'),
        ('ee000000-planted', 'not readable as a regular file'),
        ('ff000000-flipped', 'MD5 %s, Orthanc recorded %s' % (hashlib.md5(b'abd').hexdigest(), md5))]


def test_without_md5_only_sizes_count(tmp_path):
    ledger = ledger_of(tmp_path, {'flipped': (3, 100.0)}, {'flipped': (3, '0' * 32)})
    dummy, dummy, missing, damaged = classify(ledger, cutoff=500.0, check_md5=False, storage_dir='/nonexistent')
    assert missing == [] and damaged == []


def test_a_file_stored_after_the_listing_is_not_missing(tmp_path):
    storage = tmp_path / 'storage'
    (storage / 'ab' / 'cd').mkdir(parents=True)
    (storage / relative_path('abcd0000-late')).write_bytes(b'late')
    ledger = ledger_of(tmp_path, {}, {'abcd0000-late': (4, None), 'abcd0000-gone': (4, None)})
    assert add_late_files(ledger, str(storage)) == 1
    dummy, dummy, missing, damaged = classify(ledger, cutoff=500.0, check_md5=False, storage_dir=str(storage))
    assert [entry['uuid'] for entry in missing] == ['abcd0000-gone'] and damaged == []


def test_files_are_hashed_by_two_workers_and_a_damaged_one_found(tmp_path, workers_used):
    used = workers_used(_audit)
    storage, contents = tmp_path / 'storage', {}
    for number in range(50):
        uuid = '%02x000000-file-%d' % (number, number)
        contents[uuid] = os.urandom(1000 + number)
        path = storage / relative_path(uuid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[uuid])
    flipped = sorted(contents)[17]
    (storage / relative_path(flipped)).write_bytes(b'\0' * len(contents[flipped]))
    ledger = ledger_of(tmp_path, dict((uuid, (len(data), 100.0)) for uuid, data in contents.items()),
                       dict((uuid, (len(data), hashlib.md5(data).hexdigest())) for uuid, data in contents.items()))
    dummy, dummy, missing, damaged = classify(ledger, cutoff=500.0, check_md5=True, storage_dir=str(storage))
    assert used == [2] and missing == [] and [entry['uuid'] for entry in damaged] == [flipped]
