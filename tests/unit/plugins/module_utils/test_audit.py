# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib

from ansible_collections.orthanc_ops.backup.plugins.module_utils._audit import classify


def expected(size, md5='0' * 32):
    return {'size': size, 'md5': md5, 'resource': 'instances/i', 'attachment': 'dicom'}


def test_classify_sorts_files_into_orphans_young_missing_and_damaged(tmp_path):
    sound = tmp_path / 'sound'
    sound.write_bytes(b'abc')
    flipped = tmp_path / 'flipped'
    flipped.write_bytes(b'abd')
    md5 = hashlib.md5(b'abc').hexdigest()
    on_disk = {
        'old-orphan': ('/s/old', 10, 100.0),
        'young-orphan': ('/s/young', 10, 900.0),
        'sound': (str(sound), 3, 100.0),
        'short': ('/s/short', 2, 100.0),
        'flipped': (str(flipped), 3, 100.0),
    }
    referenced = {'sound': expected(3, md5), 'short': expected(3, md5), 'flipped': expected(3, md5),
                  'gone': expected(7)}
    orphans, young, missing, damaged = classify(on_disk, referenced, cutoff=500.0, check_md5=True, threads=3)
    assert orphans == [{'uuid': 'old-orphan', 'path': '/s/old', 'size': 10}] and young == 1
    assert [entry['uuid'] for entry in missing] == ['gone']
    assert [(entry['uuid'], entry['problem']) for entry in damaged] == [
        ('flipped', 'MD5 %s, Orthanc recorded %s' % (hashlib.md5(b'abd').hexdigest(), md5)),
        ('short', '2 bytes, Orthanc recorded 3')]


def test_without_md5_only_sizes_count():
    on_disk = {'flipped': ('/nonexistent/never-read', 3, 100.0)}
    dummy, dummy, missing, damaged = classify(on_disk, {'flipped': expected(3)}, cutoff=500.0, check_md5=False)
    assert missing == [] and damaged == []
