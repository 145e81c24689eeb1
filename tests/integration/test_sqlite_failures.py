# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Failures of backup and restore: after each, Orthanc serves its data unchanged and no
partial backup is taken for a complete one."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from harness import complete_backups, kill_while_stopped, listed_files, mounted, partials


def test_stop_command_fails(loaded, ansible, repository):
    orthanc, before = loaded
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='cold', stop_command='echo cannot stop >&2; false'))
    assert rc != 0 and result['failed']
    assert 'The stop command' in result['msg'] and 'cannot stop' in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == before
    assert complete_backups(repository) == [] and partials(repository) == []


@pytest.mark.slow
def test_start_command_fails_loudly(loaded, ansible, repository):
    orthanc, before = loaded
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', mode='cold', start_command='false'))
    assert rc != 0 and result['failed'] and result['orthanc_down'] is True
    assert 'ORTHANC IS DOWN' in result['msg'] and '"/bin/sh -c false"' in result['msg']
    assert not orthanc.answers()
    assert complete_backups(repository) == [] and partials(repository) == []
    orthanc.start()
    assert orthanc.md5s() == before


@pytest.fixture
def small_disk(tmp_path):
    with mounted(str(tmp_path / 'small-disk'), '-t', 'tmpfs', '-o', 'size=80m', 'tmpfs') as mount:
        yield mount


@pytest.mark.slow
def test_repository_too_small_is_refused_before_stopping(loaded, ansible, small_disk):
    orthanc, before = loaded
    pid = orthanc.pid()
    filler = os.path.join(small_disk, 'filler')
    subprocess.run(['fallocate', '-l', '60m', filler], check=True)
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=small_disk, instance='pacs'))
    assert rc != 0 and 'Not enough free space' in result['msg'] and 'Nothing was stopped' in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == before
    assert complete_backups(small_disk) == [] and partials(small_disk) == []


@pytest.mark.slow
def test_repository_fills_up_during_the_copy(loaded, ansible, small_disk):
    orthanc, before = loaded
    # The disk fills while Orthanc is being stopped, after the free-space check passed.
    filler = os.path.join(small_disk, 'filler')
    stop = 'fallocate -l $(($(stat -f -c "%%a*%%S" %s))) %s; %s' % (small_disk, filler, orthanc.stop_command)
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=small_disk, instance='pacs', mode='cold', stop_command=stop))
    assert rc != 0 and 'No space left on device' in result['msg'] and 'partial backup was removed' in result['msg']
    assert orthanc.answers() and orthanc.md5s() == before
    assert complete_backups(small_disk) == [] and partials(small_disk) == []


@pytest.mark.slow
def test_unwritable_repository(loaded, ansible, tmp_path):
    orthanc, before = loaded
    not_a_folder = tmp_path / 'file'
    not_a_folder.write_text('x')
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=str(not_a_folder), instance='pacs'))
    assert rc != 0 and 'Cannot use the repository' in result['msg'] and 'Not a directory' in result['msg']
    assert orthanc.md5s() == before


@pytest.mark.slow
def test_module_killed_while_orthanc_is_stopped(loaded, ansible, repository):
    orthanc, before = loaded
    process = kill_while_stopped(ansible, orthanc, orthanc.module_params(repository=repository, instance='pacs',
                                                                         mode='cold'))
    assert process.returncode != 0
    orthanc.wait(timeout=60)    # the watcher brought it back
    assert orthanc.md5s() == before
    assert complete_backups(repository) == [] and len(ledgers(repository)) == 1    # left by the killed run

    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    assert complete_backups(repository) == [result['backup_id']] and partials(repository) == []
    assert ledgers(repository) == []


def ledgers(repository):
    folder = os.path.join(repository, 'pacs')
    return [name for name in os.listdir(folder) if name.startswith('.orthanc-ops-ledger-')]


@pytest.mark.slow
def test_second_concurrent_backup_fails_at_once(loaded, ansible, repository):
    orthanc, before = loaded
    slow = orthanc.module_params(repository=repository, instance='pacs', mode='cold',
                                 stop_command='sleep 4; ' + orthanc.stop_command)
    first, first_out = ansible.start('orthanc_backup', slow)
    lock = os.path.join(repository, 'pacs', '.lock')
    deadline = time.monotonic() + 60
    while not (os.path.exists(lock) and open(lock).read().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    second, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'Instance "pacs" in %s is busy' % repository in second['msg']
    assert first.poll() is None, 'the second run should fail before the first ends (%.1f s)' % (
        time.monotonic() - started)
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert complete_backups(repository) == [ansible.result(first_out)['backup_id']]
    assert orthanc.md5s() == before


@pytest.mark.slow
def test_restore_refuses_an_altered_backup(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    victim = sorted(name for name in listed_files(backup['path']) if name.startswith('storage/'))[0]
    with open(os.path.join(backup['path'], victim), 'r+b') as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    pid = orthanc.pid()

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'is damaged' in result['msg'] and victim in result['msg'] and 'Nothing was changed' in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == live
    assert not [name for name in os.listdir(orthanc.storage_dir) if name.startswith('.orthanc-')]


@pytest.mark.slow
def test_restore_rolls_back_when_orthanc_disagrees(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    manifest_path = os.path.join(backup['path'], 'manifest.json')
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest['counts']['instances'] += 1    # Orthanc will not match this after the swap
    with open(manifest_path, 'w') as handle:
        json.dump(manifest, handle)

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'previous data was put back' in result['msg'] and 'instances' in result['msg']
    assert orthanc.answers() and orthanc.md5s() == live
    assert not [name for name in os.listdir(orthanc.storage_dir) if name.startswith('.orthanc-')]
