# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The torture tests of mode=freeze and mode=cold: 100 frozen backups, then 8 cold ones, of a SQLite Orthanc
while clients upload and delete without pause. Every copy must be a sound SQLite database holding exactly
Orthanc's state at the backup's consistent_at, with every file it references; no client request may fail
during a freeze."""

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
COLD_BACKUPS = 8
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
    """An uploader and a deleter hammering Orthanc; each request logged with when it began and ended (a
    failed delete with when it began: Orthanc may have done it before the connection broke)."""

    def __init__(self, orthanc):
        self.orthanc = orthanc
        self.uploads, self.deletes, self.failed_deletes, self.failures = [], [], [], []
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
                self.failed_deletes.append((began, iid))
                self.failures.append('delete %s: %s' % (iid, exc))


def epoch(iso):
    return datetime.strptime(iso.replace('Z', '+0000'), '%Y-%m-%dT%H:%M:%S.%f%z').timestamp()


def backups_under_load(orthanc, ansible, repository, tmp_path, mode, count):
    """``count`` backups in ``mode`` run by one ansible-playbook while the clients work; (results, clients)."""
    results = str(tmp_path / 'backups.json')
    backup = {'orthanc_ops.backup.orthanc_backup': orthanc.module_params(
        repository=repository, instance='pacs', mode=mode),
        'loop': '{{ range(%d) | list }}' % count, 'register': 'backups'}
    save = {'ansible.builtin.copy': {'content': '{{ backups.results | to_json }}', 'dest': results, 'mode': '0600'}}
    with Clients(orthanc) as clients:
        rc, output = ansible.run_tasks([backup, save], timeout=1800)
    assert rc == 0, output[-3000:]
    with open(results) as handle:
        runs = json.load(handle)
    assert len(runs) == count
    return runs, clients


def check_consistent(runs, clients, initial, tmp_path):
    """Each backup's index holds exactly the instances of its consistent_at; {backup_id: instances}."""
    held = {}
    for run in runs:
        moment = epoch(run['consistent_at'])
        instances = instances_in(os.path.join(run['path'], 'index'), str(tmp_path / 'scratch'))
        assert len(instances) == run['counts']['instances']
        acknowledged = set(iid for dummy, ended, iid in clients.uploads if ended < moment) | initial
        gone = set(iid for dummy, ended, iid in clients.deletes if ended < moment)
        deleting = set(iid for began, dummy, iid in clients.deletes if began < moment) | set(
            iid for began, iid in clients.failed_deletes if began < moment)
        later = set(iid for began, dummy, iid in clients.uploads if began > moment)
        assert acknowledged - deleting <= instances, run['backup_id']
        assert not instances & (gone | later), run['backup_id']
        held[run['backup_id']] = instances
    return held


def check_restores(orthanc, ansible, repository, held, runs):
    """Restoring each of ``runs`` gives Orthanc exactly its state, every file as Orthanc recorded it."""
    for run in runs:
        restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
            repository=repository, instance='pacs', backup=run['backup_id']))
        assert rc == 0, output
        assert set(orthanc.instances()) == held[run['backup_id']]
        for iid in held[run['backup_id']]:
            orthanc.api('POST', '/instances/%s/attachments/dicom/verify-md5' % iid, b'')


def test_a_hundred_freezes_under_uploads_and_deletes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    initial = set(orthanc.upload(make_instances(patients=2)))
    pid = orthanc.pid()
    freezes, clients = backups_under_load(orthanc, ansible, repository, tmp_path, 'freeze', FREEZES)
    assert clients.failures == [] and orthanc.pid() == pid
    assert all(run['downtime_seconds'] == 0 for run in freezes)
    assert len(clients.uploads) > FREEZES and len(clients.deletes) > FREEZES / 2
    held = check_consistent(freezes, clients, initial, tmp_path)

    pauses = sorted(run['pause_seconds'] for run in freezes)
    print('pause_seconds: median %.4f, max %.4f; %d backups froze Orthanc more than once; %d uploads, %d deletes'
          % (pauses[len(pauses) // 2], pauses[-1], sum(run['timings']['freezes'] > 1 for run in freezes),
             len(clients.uploads), len(clients.deletes)))
    check_restores(orthanc, ansible, repository, held, (freezes[FREEZES // 3], freezes[-1]))


def test_cold_backups_under_uploads_and_deletes(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    initial = set(orthanc.upload(make_instances(patients=2)))
    runs, clients = backups_under_load(orthanc, ansible, repository, tmp_path, 'cold', COLD_BACKUPS)
    assert all(run['downtime_seconds'] > 0 and run['timings']['stops'] in (1, 2) for run in runs)
    assert len(clients.uploads) > COLD_BACKUPS and clients.deletes
    held = check_consistent(runs, clients, initial, tmp_path)
    print('stops: %s; %d uploads, %d deletes, %d requests refused while Orthanc was stopped'
          % ([run['timings']['stops'] for run in runs], len(clients.uploads), len(clients.deletes),
             len(clients.failures)))
    check_restores(orthanc, ansible, repository, held, (runs[COLD_BACKUPS // 2], runs[-1]))
