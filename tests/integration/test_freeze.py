# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mode=freeze: a SQLite Orthanc paused by the kernel for milliseconds instead of restarted, under
uploads; always continued, by the module or by its watcher."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time

import pytest

from harness import complete_backups, make_instances, module_interpreter, partials, watcher_logs

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def orthanc_state(orthanc):
    with open('/proc/%d/stat' % orthanc.pid()) as handle:
        return handle.read().rsplit(')', 1)[1].split()[0]


def test_freeze_backup_under_uploads_restores_what_was_acknowledged(loaded, ansible, repository, tmp_path):
    orthanc, before = loaded
    pid = orthanc.pid()
    acknowledged, failures, stop = [], [], threading.Event()

    def upload():
        number = 0
        while not stop.is_set() and number < 200:
            try:
                acknowledged.append((time.monotonic(), orthanc.upload(make_instances(
                    patients=1, studies=1, series=1, instances=1, first_patient=100 + number))[0]))
            except OSError as exc:
                failures.append(exc)
            number += 1
    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        started = time.monotonic()
        backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
            repository=repository, instance='pacs', mode='freeze'))
    finally:
        stop.set()
        uploader.join()
    assert rc == 0, output
    assert failures == [] and orthanc.pid() == pid and backup['downtime_seconds'] == 0
    assert 0 < backup['pause_seconds'] < 1 and backup['timings']['pause_seconds'] == backup['pause_seconds']
    copy = tmp_path / 'index-copy'    # SQLite writes an index-shm beside a WAL database it opens
    shutil.copytree(os.path.join(backup['path'], 'index'), str(copy))
    connection = sqlite3.connect(str(copy / 'index'))
    assert connection.execute('PRAGMA integrity_check').fetchone() == ('ok',)
    connection.close()

    # Every instance acknowledged before the backup began is in it; the count is the index's own.
    expected = set(before) | set(iid for moment, iid in acknowledged if moment < started)
    orthanc.wipe()
    orthanc.start()
    restored, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository,
                                                                                instance='pacs'))
    assert rc == 0, output
    instances = set(orthanc.instances())
    assert expected <= instances and len(instances) == backup['counts']['instances']
    md5s = orthanc.md5s()
    assert all(md5s[iid] == before[iid] for iid in before)


def test_by_default_a_pause_over_max_pause_is_taken_cold_instead(loaded, ansible, repository):
    orthanc, before = loaded
    pid = orthanc.pid()
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', max_pause=0.000001))
    assert rc == 0, output
    assert any('longer than max_pause' in warning and 'takes it cold' in warning for warning in backup['warnings'])
    assert backup['pause_seconds'] > 0 and backup['downtime_seconds'] > 0 and orthanc.pid() != pid
    with open(os.path.join(backup['path'], 'manifest.json')) as handle:
        assert json.load(handle)['mode'] == 'cold'
    assert backup['counts']['instances'] == len(before) and complete_backups(repository) == [backup['backup_id']]
    assert orthanc.md5s() == before


def test_a_pause_over_max_pause_continues_orthanc_and_completes_nothing(loaded, ansible, repository):
    orthanc, before = loaded
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='freeze', max_pause=0.000001))
    assert rc != 0 and 'longer than max_pause' in result['msg'] and result['pause_seconds'] > 0, output
    assert orthanc_state(orthanc) != 'T' and orthanc.pid() == pid and orthanc.md5s() == before
    assert complete_backups(repository) == [] and partials(repository) == []


def test_module_killed_while_orthanc_is_frozen_is_continued_by_the_watcher(loaded, ansible, repository):
    orthanc, before = loaded
    pid = orthanc.pid()
    stat = '/proc/%d/stat' % pid
    params = orthanc.module_params(repository=repository, instance='pacs', mode='freeze', max_pause=30)
    for dummy in range(20):
        process, out = ansible.start('orthanc_backup', params)
        module = None
        while module is None and process.poll() is None:
            module = module_interpreter(process, 'orthanc_backup')
        caught = False
        while module and process.poll() is None:
            with open(stat) as handle:
                frozen = handle.read().rsplit(')', 1)[1].split()[0] == 'T'
            if frozen:    # the freeze lasts milliseconds: hold the module still inside it, then kill it
                try:
                    os.kill(module, signal.SIGSTOP)
                    caught = orthanc_state(orthanc) == 'T'
                    os.kill(module, signal.SIGKILL if caught else signal.SIGCONT)
                except ProcessLookupError:    # it had finished already
                    caught = False
                break
        process.communicate(timeout=120)
        if caught:
            break
    assert caught, 'the module was never caught while Orthanc was frozen'
    deadline = time.monotonic() + 10
    while orthanc_state(orthanc) == 'T':
        assert time.monotonic() < deadline, 'the watcher did not continue Orthanc'
        time.sleep(0.01)
    assert orthanc.answers() and orthanc.pid() == pid and orthanc.md5s() == before
    assert watcher_logs('continued pids [%d]' % pid), 'the watcher left no word of the thaw'
