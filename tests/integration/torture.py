# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the torture tests of mode=freeze and mode=cold share: clients that upload and delete without pause while
one ansible-playbook takes backups, and the checks that every copy is a sound SQLite database holding exactly
Orthanc's state at the backup's consistent_at, and restores to it."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from datetime import datetime

from harness import make_instances

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

    def __init__(self, orthanc, upload_pause):
        self.orthanc, self.upload_pause = orthanc, upload_pause
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
            time.sleep(self.upload_pause)

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


def backups_under_load(orthanc, ansible, repository, tmp_path, mode, count, upload_pause):
    """``count`` backups in ``mode`` run by one ansible-playbook while the clients work, one upload every
    ``upload_pause`` seconds or so; (results, clients)."""
    results = str(tmp_path / 'backups.json')
    backup = {'orthanc_ops.backup.orthanc_backup': orthanc.module_params(
        repository=repository, instance='pacs', mode=mode),
        'loop': '{{ range(%d) | list }}' % count, 'register': 'backups'}
    save = {'ansible.builtin.copy': {'content': '{{ backups.results | to_json }}', 'dest': results, 'mode': '0600'}}
    with Clients(orthanc, upload_pause) as clients:
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
