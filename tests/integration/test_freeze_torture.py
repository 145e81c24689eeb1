# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The torture test of mode=freeze: 100 frozen backups of a SQLite Orthanc while clients upload and
delete without pause. Every copy must be a sound SQLite database holding exactly Orthanc's state at
the backup's consistent_at, and no client request may fail."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from datetime import datetime

import pytest

from harness import make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

FREEZES = 100
INSTANCE = 4    # resourceType of an instance in Orthanc's SQLite index


def instances_in(index_folder, scratch):
    """The instances of a backup's index copy, after SQLite's own check of the whole database."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(index_folder, scratch)    # opening replays the WAL and writes beside it
    connection = sqlite3.connect(os.path.join(scratch, 'index'))
    try:
        assert connection.execute('PRAGMA integrity_check').fetchall() == [('ok',)], index_folder
        return set(row[0] for row in connection.execute('SELECT publicId FROM Resources WHERE resourceType = ?',
                                                        (INSTANCE,)))
    finally:
        connection.close()


class Clients:
    """An uploader and a deleter hammering Orthanc; each request logged with when it began and ended."""

    def __init__(self, orthanc):
        self.orthanc = orthanc
        self.uploads, self.deletes, self.failures = [], [], []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._upload), threading.Thread(target=self._delete)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def _upload(self):
        number = 0
        while not self.stopping.is_set():
            data = make_instances(patients=1, studies=1, series=1, instances=1, first_patient=1000 + number)
            began = time.time()
            try:
                iid = self.orthanc.upload(data)[0]
                self.uploads.append((began, time.time(), iid))
            except OSError as exc:
                self.failures.append('upload: %s' % exc)
            number += 1
            time.sleep(0.05)

    def _delete(self):
        rng = random.Random(7)
        while not self.stopping.wait(0.2):
            deleted = set(iid for dummy, dummy, iid in self.deletes)
            candidates = [iid for dummy, dummy, iid in self.uploads[:-5] if iid not in deleted]
            if not candidates:
                continue
            iid = rng.choice(candidates)
            began = time.time()
            try:
                self.orthanc.api('DELETE', '/instances/%s' % iid)
                self.deletes.append((began, time.time(), iid))
            except OSError as exc:
                self.failures.append('delete %s: %s' % (iid, exc))


def epoch(iso):
    return datetime.strptime(iso.replace('Z', '+0000'), '%Y-%m-%dT%H:%M:%S.%f%z').timestamp()


def test_a_hundred_freezes_under_uploads_and_deletes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    initial = set(orthanc.upload(make_instances(patients=2)))
    pid = orthanc.pid()
    results = str(tmp_path / 'freezes.json')
    backup = {'orthanc_ops.backup.orthanc_backup': orthanc.module_params(
        repository=repository, instance='pacs', mode='freeze'),
        'loop': '{{ range(%d) | list }}' % FREEZES, 'register': 'freezes'}
    save = {'ansible.builtin.copy': {'content': '{{ freezes.results | to_json }}', 'dest': results, 'mode': '0600'}}
    with Clients(orthanc) as clients:
        rc, output = ansible.run_tasks([backup, save], timeout=1800)
    assert rc == 0, output[-3000:]
    assert clients.failures == [] and orthanc.pid() == pid
    with open(results) as handle:
        freezes = json.load(handle)
    assert len(freezes) == FREEZES and all(run['downtime_seconds'] == 0 for run in freezes)
    assert len(clients.uploads) > FREEZES and len(clients.deletes) > FREEZES / 2

    held = {}
    for run in freezes:
        moment = epoch(run['consistent_at'])
        instances = instances_in(os.path.join(run['path'], 'index'), str(tmp_path / 'scratch'))
        assert len(instances) == run['counts']['instances']
        acknowledged = set(iid for dummy, ended, iid in clients.uploads if ended < moment) | initial
        gone = set(iid for dummy, ended, iid in clients.deletes if ended < moment)
        deleting = set(iid for began, dummy, iid in clients.deletes if began < moment)
        later = set(iid for began, dummy, iid in clients.uploads if began > moment)
        assert acknowledged - deleting <= instances, run['backup_id']
        assert not instances & (gone | later), run['backup_id']
        held[run['backup_id']] = instances

    pauses = sorted(run['pause_seconds'] for run in freezes)
    print('pause_seconds: median %.4f, max %.4f; %d backups froze Orthanc more than once; %d uploads, %d deletes'
          % (pauses[len(pauses) // 2], pauses[-1], sum(run['timings']['freezes'] > 1 for run in freezes),
             len(clients.uploads), len(clients.deletes)))

    # Restoring a sample of the copies gives Orthanc exactly their state, every file as Orthanc recorded it.
    for run in (freezes[FREEZES // 3], freezes[-1]):
        restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
            repository=repository, instance='pacs', backup=run['backup_id']))
        assert rc == 0, output
        assert set(orthanc.instances()) == held[run['backup_id']]
        for iid in held[run['backup_id']]:
            orthanc.api('POST', '/instances/%s/attachments/dicom/verify-md5' % iid, b'')
