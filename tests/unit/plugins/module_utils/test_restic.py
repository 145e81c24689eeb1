# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What restic prints, read: its failures in words an admin can act on, its snapshots by backup, its URLs; what
a push gives it."""

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._offsite import parent
from ansible_collections.orthanc_ops.backup.plugins.module_utils._restic import by_backup, explain, summary, tags, url_password

LOCATION = 's3:http://127.0.0.1:9000/bucket/pacs'


@pytest.mark.parametrize('stderr, words', [
    ('Fatal: wrong password or no key found\n', 'the password does not open it'),
    ('unable to create lock in backend: repository is already locked by PID 4242 on vm by root (UID 0, GID 0)\n'
     'lock was created at 2026-11-29 03:00:00 (2m0s ago)\nstorage ID 1a2b3c4d\n', 'PID 4242 on vm'),
    # An unreachable repository also asks whether there is one: the network is named, not a missing repository.
    ('Fatal: unable to open config file: Stat: Get "http://127.0.0.1:9/bucket/?location=": dial tcp 127.0.0.1:9: '
     'connect: connection refused\nIs there a repository at the following location?\n' + LOCATION + '\n',
     'it cannot be reached'),
    ('Fatal: unable to save snapshot: Save(<data/1a2b>): write /srv/restic/data/1a/1a2b: no space left on device\n',
     'it is full'),
    ('Fatal: unable to save snapshot: open /srv/restic/locks/1a2b: read-only file system\n', 'refuses this change'),
    ('Fatal: unable to open config file: Stat: stat /srv/none/config: no such file or directory\n'
     'Is there a repository at the following location?\n/srv/none\n', 'there is no restic repository there'),
])
def test_failures_are_told_with_what_to_do(stderr, words):
    message = explain(stderr, LOCATION, 'push to')
    assert message.startswith('Cannot push to the restic repository %s: ' % LOCATION)
    assert words in message


def test_an_unknown_failure_keeps_restics_last_lines():
    message = explain('some progress\nPack ID does not match, want 6fda, got 24b5\nFatal: repository contains '
                      'errors\n', LOCATION, 'check')
    assert message.endswith('Pack ID does not match, want 6fda, got 24b5; Fatal: repository contains errors.')


def test_snapshots_are_grouped_by_backup_oldest_first():
    snapshots = [
        {'id': 'c', 'time': '2026-11-28T01:00:00Z', 'tags': tags('pacs', '20261128T010000Z')},
        {'id': 'a', 'time': '2026-11-27T01:00:00Z', 'tags': tags('pacs', '20261127T010000Z')},
        {'id': 'b', 'time': '2026-11-28T01:00:00.5Z', 'tags': tags('pacs', '20261128T010000Z')},
        {'id': 'x', 'time': '2026-11-28T02:00:00Z', 'tags': ['made-by-hand']},
        {'id': 'y', 'time': '2026-11-28T02:00:00Z'},
        {'id': 'z', 'time': '2026-11-28T02:00:00Z', 'tags': ['orthanc-backup:../../etc', 'orthanc-backup:latest']},
    ]
    grouped = by_backup(snapshots)
    assert sorted(grouped) == ['20261127T010000Z', '20261128T010000Z']
    assert [snapshot['id'] for snapshot in grouped['20261128T010000Z']] == ['c', 'b']


def test_the_summary_is_the_last_summary_line():
    out = ('{"message_type":"status","percent_done":0.5}\nnot json\n'
           '{"message_type":"summary","data_added":123,"snapshot_id":"abcd"}\n')
    assert summary(out)['data_added'] == 123
    with pytest.raises(OrthancOpsError, match='without its summary'):
        summary('{"message_type":"status"}\n')


@pytest.mark.parametrize('location, password', [
    ('rest:https://backup:s3cret@restic.example.org:8000/pacs/', 's3cret'),
    ('s3:https://s3.example.org/bucket/pacs', None),
    ('sftp:backup@host:/srv/restic', None),
    ('/srv/restic', None),
])
def test_a_password_in_a_url_is_found_to_be_hidden(location, password):
    assert url_password(location) == password


def test_the_parent_of_a_push_is_the_newest_snapshot_of_the_instance_taken_on_this_host():
    held = by_backup([
        {'id': 'a1', 'time': '2026-11-27T01:00:00Z', 'hostname': 'pacs', 'tags': tags('pacs', '20261127T010000Z')},
        {'id': 'b1', 'time': '2026-11-28T01:00:00Z', 'hostname': 'pacs', 'tags': tags('pacs', '20261128T010000Z')},
        {'id': 'b2', 'time': '2026-11-28T05:00:00Z', 'hostname': 'pacs', 'tags': tags('pacs', '20261128T010000Z')},
        {'id': 'c1', 'time': '2026-11-29T01:00:00Z', 'hostname': 'backup-host',
         'tags': tags('pacs', '20261129T010000Z')},
    ])
    assert parent(held, 'pacs') == 'b2'
    assert parent(held, 'backup-host') == 'c1'
    assert parent(held, 'elsewhere') is None
    assert parent(None, 'pacs') is None    # a repository created by this push
