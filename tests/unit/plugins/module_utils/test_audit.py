# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.orthanc_ops.backup.plugins.module_utils._audit import classify
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import relative_path


def expected(size, md5='0' * 32):
    return {'size': size, 'md5': md5, 'resource': 'instances/i', 'attachment': 'dicom'}


def test_classify_sorts_files_into_orphans_young_missing_and_damaged(tmp_path):
    def stored(uuid, data):
        path = tmp_path / relative_path(uuid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)
    md5 = hashlib.md5(b'abc').hexdigest()
    planted = stored('ee000000-planted', b'abc')
    os.unlink(planted)
    os.symlink(stored('0a000000-sound', b'abc'), planted)    # a link where Orthanc writes files: never followed
    on_disk = {
        'old-orphan': ('/s/old', 10, 100.0),
        'young-orphan': ('/s/young', 10, 900.0),
        '0a000000-sound': (stored('0a000000-sound', b'abc'), 3, 100.0),
        'short': ('/s/short', 2, 100.0),
        'ff000000-flipped': (stored('ff000000-flipped', b'abd'), 3, 100.0),
        'ee000000-planted': (planted, 3, 100.0),
    }
    referenced = {'0a000000-sound': expected(3, md5), 'short': expected(3, md5), 'ff000000-flipped': expected(3, md5),
                  'ee000000-planted': expected(3, md5), 'gone': expected(7)}
    orphans, young, missing, damaged = classify(on_disk, referenced, cutoff=500.0, check_md5=True,
                                                storage_dir=str(tmp_path), threads=3)
    assert orphans == [{'uuid': 'old-orphan', 'path': '/s/old', 'size': 10}] and young == 1
    assert [entry['uuid'] for entry in missing] == ['gone']
    assert [(entry['uuid'], entry['problem']) for entry in damaged] == [
        ('ee000000-planted', 'not readable as a regular file'),
        ('ff000000-flipped', 'MD5 %s, Orthanc recorded %s' % (hashlib.md5(b'abd').hexdigest(), md5)),
        ('short', '2 bytes, Orthanc recorded 3')]


def test_without_md5_only_sizes_count():
    on_disk = {'flipped': ('/nonexistent/never-read', 3, 100.0)}
    dummy, dummy, missing, damaged = classify(on_disk, {'flipped': expected(3)}, cutoff=500.0, check_md5=False)
    assert missing == [] and damaged == []
