# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._transfer import choose, parse_listing, parse_stats

# What rsync 3.2 prints for --stats (figures with thousands separators) and --list-only.
STATS = '''
Number of files: 31 (reg: 17, dir: 14)
Number of created files: 31 (reg: 17, dir: 14)
Number of deleted files: 0
Number of regular files transferred: 3
Total file size: 204,144 bytes
Total transferred file size: 42,580 bytes
Literal data: 42,580 bytes
Matched data: 0 bytes
File list size: 0
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 44,712
Total bytes received: 310

sent 44,712 bytes  received 310 bytes  90,044.00 bytes/sec
total size is 204,144  speedup is 4.53
'''

LISTING = '''drwxr-xr-x          4,096 2026/11/28 04:05:57 .
-rw-------              5 2026/11/28 04:05:57 .lock
drwxr-xr-x          4,096 2026/11/27 23:10:45 20261127T231045Z
drwxr-xr-x          4,096 2026/11/26 23:00:00 20261126T230000Z
drwxr-xr-x          4,096 2026/11/28 04:05:57 20261128T040557Z.partial
-rw-r--r--              3 2026/11/28 04:05:57 20261125T230000Z
drwxr-xr-x          4,096 2026/11/28 04:05:57 notes
'''


def test_stats_are_the_bytes_and_files_of_the_copy():
    assert parse_stats(STATS) == {'new_bytes': 42580, 'sent_bytes': 44712, 'files_transferred': 3}


def test_stats_missing_from_the_output_are_unknown():
    assert parse_stats('sent 10 bytes  received 20 bytes\n') == {
        'new_bytes': None, 'sent_bytes': None, 'files_transferred': None}


def test_listing_keeps_complete_backup_folders_only_oldest_first():
    assert parse_listing(LISTING) == ['20261126T230000Z', '20261127T231045Z']


def test_choose_latest_or_a_present_id():
    ids = ['20261126T230000Z', '20261127T231045Z']
    assert choose('latest', ids, 'there') == '20261127T231045Z'
    assert choose('20261126T230000Z', ids, 'there') == '20261126T230000Z'


@pytest.mark.parametrize('backup, ids, expected', [
    ('latest', [], 'no complete backup at all'),
    ('20261101T000000Z', ['20261126T230000Z'], 'no complete backup "20261101T000000Z"'),
])
def test_choose_says_what_is_there_when_the_backup_is_not(backup, ids, expected):
    with pytest.raises(OrthancOpsError) as error:
        choose(backup, ids, '/srv/orthanc-backups/pacs1 on backup1')
    assert expected in str(error.value)
    assert 'on backup1' in str(error.value) and 'nothing was copied' in str(error.value)
