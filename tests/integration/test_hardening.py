# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tried as an attacker or a clumsy admin would: a backup folder is untrusted input, every path is
contained, modes do not depend on the umask, operations exclude each other, and bad input is refused
with a clear message before anything changes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from harness import complete_backups, kill_while_stopped, make_instances, partials, rewrite_listing, watcher_logs

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

SECRET = b'a root-only secret\n'
UUID = 'abcd0000-0000-4000-8000-000000000000'


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / 'secret'
    path.write_bytes(SECRET)
    os.chmod(str(path), 0o600)
    return str(path)


def entry(data):
    return {'size': len(data), 'md5': hashlib.md5(data).hexdigest()}


def holds_secret(folder):
    """True when a regular file under ``folder`` holds the secret's bytes."""
    for current, dummy, names in os.walk(folder):
        for name in names:
            path = os.path.join(current, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as handle:
                    if SECRET in handle.read():
                        return True
    return False


def storage_files(folder):
    return sorted(os.path.join(current, name) for current, dummy, names in os.walk(folder) for name in names
                  if len(os.path.basename(current)) == 2 and not name.startswith('index'))


def tree(folder):
    """Every path under ``folder`` with its size: what "nothing changed" compares."""
    return sorted((os.path.relpath(os.path.join(current, name), folder), os.lstat(os.path.join(current, name)).st_size)
                  for current, dummy, names in os.walk(folder) for name in names if name != '.lock')


# 1. The restore stages only what the manifest lists, and never through a link.
@pytest.mark.parametrize('listed', [False, True], ids=['unlisted', 'listed-in-the-manifest'])
def test_planted_links_are_refused_by_verify_and_restore(backed_up, ansible, repository, secret, listed):
    orthanc, backup, live = backed_up
    storage_link = 'storage/ab/cd/' + UUID
    os.makedirs(os.path.join(backup['path'], 'storage', 'ab', 'cd'))
    for relative in (storage_link, 'config/planted.json'):
        os.symlink(secret, os.path.join(backup['path'], relative))
    if listed:    # a thorough attacker also lists them, with the secret's true size and MD5
        rewrite_listing(backup['path'], lambda files: files.update(
            {storage_link: entry(SECRET), 'config/planted.json': entry(SECRET)}))
    pid = orthanc.pid()

    verify, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs'})
    assert rc != 0, output
    assert '%s is a symbolic link' % storage_link in verify['problems']
    assert 'config/planted.json is a symbolic link' in verify['problems']

    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', restore_config=True))
    assert rc != 0 and 'is damaged' in result['msg'] and 'is a symbolic link' in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == live
    assert not holds_secret(os.path.dirname(orthanc.config))


# 2. Verify and restore never read outside the backup.
@pytest.mark.parametrize('key', ['{secret}', 'storage/../../../../secret', 'config/../../../../secret'])
def test_manifest_keys_outside_the_backup_are_refused(backed_up, ansible, repository, secret, key):
    orthanc, backup, live = backed_up
    key = key.format(secret=secret)
    rewrite_listing(backup['path'], lambda files: files.update({key: entry(SECRET)}))

    verify, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs',
                                                               'backup': backup['backup_id']})
    assert rc != 0 and 'is not valid: %r is not a path inside the backup' % key in verify['msg']
    assert 'bytes' not in verify['msg'] and 'problems' not in verify
    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs',
                                                                              backup=backup['backup_id']))
    assert rc != 0 and 'is not valid' in result['msg'] and orthanc.md5s() == live


# 3. The backup never follows a linked attachment.
def test_backup_never_follows_a_linked_attachment(loaded, ansible, repository, secret):
    orthanc, before = loaded
    victim = storage_files(orthanc.storage_dir)[0]
    os.unlink(victim)
    os.symlink(secret, victim)

    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and result['live_missing'] == [os.path.basename(victim)], output
    assert 'not completed' in result['msg'] and orthanc.answers()
    assert complete_backups(repository) == [] and partials(repository) == []

    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        repository=repository, instance='pacs', allow_missing_files=True))
    assert rc == 0 and result['live_missing_count'] == 1 and result['missing_attachments'] == [os.path.basename(victim)]
    assert not holds_secret(repository)


# 3b. Nor does it link what was planted in the backup it links from.
def test_backup_copies_what_was_planted_in_the_previous_backup(backed_up, ansible, repository, secret):
    orthanc, backup, live = backed_up
    linked, resized = storage_files(os.path.join(backup['path'], 'storage'))[:2]
    os.unlink(linked)
    os.symlink(secret, linked)
    with open(resized, 'ab') as handle:
        handle.write(b'planted')

    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0 and result['previous_backup'] == backup['backup_id'], output
    assert any(text.startswith('2 file(s) that backup %s lists are not there as listed' % backup['backup_id'])
               for text in result['warnings']), output
    verify, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs',
                                                               'backup': result['backup_id']})
    assert rc == 0 and verify['problems'] == [], output
    assert not holds_secret(result['path'])
    for planted in (linked, resized):
        taken = os.path.join(result['path'], os.path.relpath(planted, backup['path']))
        assert not os.path.islink(taken) and os.stat(taken).st_ino != os.stat(resized).st_ino


# 4. Modes are set explicitly, whatever the umask.
def test_modes_do_not_depend_on_the_umask(loaded, ansible, tmp_path):
    orthanc, before = loaded
    top = tmp_path / 'new'
    repository = str(top / 'parents' / 'repository')
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'),
                                     umask=0)
    assert rc == 0, output
    modes = {}
    for current, folders, names in os.walk(str(top)):
        for name in folders + names:
            path = os.path.join(current, name)
            modes[os.path.relpath(path, str(top))] = (os.path.isdir(path), os.lstat(path).st_mode & 0o777)
    assert len(modes) > 20 and os.lstat(str(top)).st_mode & 0o777 == 0o700
    assert dict((path, mode) for path, (is_dir, mode) in modes.items() if mode != (0o700 if is_dir else 0o600)) == {}


# 5. The watcher writes only in its own private folder.
def test_watcher_ignores_planted_files_and_brings_orthanc_back(loaded, ansible, repository, tmp_path):
    orthanc, before = loaded
    appended = tmp_path / 'appended-to'
    appended.write_bytes(b'')
    old_fixed_name = os.path.join(tempfile.gettempdir(), 'orthanc-ops-watcher.log')
    if os.path.lexists(old_fixed_name):
        os.unlink(old_fixed_name)
    os.symlink(str(appended), old_fixed_name)
    try:
        kill_while_stopped(ansible, orthanc, orthanc.module_params(repository=repository, instance='pacs',
                                                                   mode='cold'))
        orthanc.wait(timeout=60)
    finally:
        os.unlink(old_fixed_name)
    assert orthanc.md5s() == before and appended.read_bytes() == b''
    logs = watcher_logs(orthanc.pidfile)    # its start command names this Orthanc's pidfile
    assert len(logs) == 1, 'the watcher left no log in its private folder'
    assert os.stat(os.path.dirname(logs[0])).st_mode & 0o777 == 0o700
    with open(logs[0]) as handle:
        assert 'vanished while Orthanc was stopped' in handle.read()
    shutil.rmtree(os.path.dirname(logs[0]))


# 6. A planted index never replaces the live one, and a failed start is reported as it happened.
def test_a_planted_index_never_reaches_the_live_index(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    planted = os.path.join(backup['path'], 'storage', 'index')
    shutil.copy(os.path.join(backup['path'], 'index', 'index'), planted)
    with open(planted, 'rb') as handle:
        data = handle.read()
    rewrite_listing(backup['path'], lambda files: files.update({'storage/index': entry(data)}))
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and "'storage/index' is not a path inside the backup" in result['msg']
    assert 'There is no usable complete backup' in result['msg'] and backup['backup_id'] in result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == live


def test_a_failed_start_on_the_restored_data_is_reported_as_it_happened(backed_up, ansible, repository, tmp_path):
    orthanc, backup, live = backed_up
    flag = tmp_path / 'fail-once'
    flag.write_text('')
    start = 'if [ -e %s ]; then rm %s; echo refused >&2; exit 1; fi; %s' % (flag, flag, orthanc.start_command)
    result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', start_command=start))
    assert rc != 0 and 'Orthanc did not start on the restored data' in result['msg'] and 'refused' in result['msg']
    assert 'previous data was put back and Orthanc runs again with it' in result['msg']
    assert 'ORTHANC IS DOWN' not in result['msg'] and '.orthanc-pre-restore' not in result['msg']
    assert orthanc.answers() and orthanc.md5s() == live
    assert not [name for name in os.listdir(orthanc.storage_dir) if name.startswith('.orthanc-')]


# 7. The audit never deletes files that are not this Orthanc's orphans.
def audit_params(orthanc, **extra):
    params = {'config': orthanc.config, 'orphans': 'delete', 'min_age': 0}
    params.update(extra)
    return params


def test_audit_never_deletes_the_files_of_an_orthanc_sharing_the_folder(make_orthanc, ansible, tmp_path):
    shared = str(tmp_path / 'shared-storage')
    first = make_orthanc('first', separate_index=True, settings={'StorageDirectory': shared})
    second = make_orthanc('second', separate_index=True, settings={'StorageDirectory': shared})
    first.upload(make_instances(patients=1))
    second.upload(make_instances(patients=1, first_patient=5))
    before = tree(shared)
    result, rc, output = ansible.run('orthanc_audit', audit_params(first))
    assert rc != 0 and 'also the storage folder of pid %d (%s)' % (second.pid(), second.config) in result['msg']
    assert result['orphans_count'] == 8 and result['removed'] == 0
    assert tree(shared) == before


def test_audit_moves_no_orphan_while_referenced_files_are_missing(loaded, ansible):
    orthanc, before = loaded
    os.unlink(storage_files(orthanc.storage_dir)[0])
    orphan = os.path.join(orthanc.storage_dir, 'ab', 'cd', UUID)
    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    with open(orphan, 'wb') as handle:
        handle.write(b'nobody references this')
    result, rc, output = ansible.run('orthanc_audit', audit_params(orthanc))
    assert rc != 0 and '1 file(s) that the index references are missing' in result['msg']
    assert result['orphans_count'] == 1 and result['missing_count'] == 1 and os.path.exists(orphan)


# 8. Backup, restore and prune exclude each other.
def test_backup_and_prune_are_refused_while_a_restore_runs(backed_up, ansible, repository, tmp_path):
    orthanc, backup, live = backed_up
    # The restore waits in its stop command until the others were tried (60 s at most), however slow they are.
    tried = tmp_path / 'tried'
    wait = 'for i in $(seq 600); do [ -e %s ] && break; sleep 0.1; done; ' % tried
    restore, out = ansible.start('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', stop_command=wait + orthanc.stop_command))
    lock = os.path.join(repository, 'pacs', '.lock')
    deadline = time.monotonic() + 60
    while not open(lock).read().startswith('restore'):
        assert time.monotonic() < deadline and restore.poll() is None
        time.sleep(0.05)
    second, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc != 0 and 'is busy' in second['msg'] and 'restore by pid' in second['msg']
    other, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='elsewhere'))
    assert rc != 0 and 'The Orthanc configured by %s is busy' % orthanc.config in other['msg']
    pruned, rc, output = ansible.run('orthanc_backup_prune', {'repository': repository, 'instance': 'pacs',
                                                              'keep_last': 1})
    assert rc != 0 and 'is busy' in pruned['msg']
    assert restore.poll() is None, 'the restore ended before the others were tried'
    tried.write_text('')
    restore.communicate(timeout=120)
    assert restore.returncode == 0 and ansible.result(out)['backup_id'] == backup['backup_id']
    assert complete_backups(repository) == [backup['backup_id']] and complete_backups(repository, 'elsewhere') == []
    assert orthanc.statistics()['CountInstances'] == backup['counts']['instances']


def test_prune_leaves_an_incoming_copy_alone(backed_up, ansible, repository):
    incoming = os.path.join(repository, 'pacs', '20990101T000000Z.partial')
    os.makedirs(incoming)
    lock = os.path.join(repository, 'pacs', '.lock')
    # What the receiving side of a push runs: rsync under flock(1) on the instance's lock.
    holder = subprocess.Popen(['flock', lock, 'sleep', '60'], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(['flock', '-n', lock, 'true'], check=False).returncode == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        params = {'repository': repository, 'instance': 'pacs', 'keep_last': 1}
        result, rc, output = ansible.run('orthanc_backup_prune', params)
        assert rc != 0 and 'is busy' in result['msg'] and 'an incoming copy' in result['msg']
        assert os.path.isdir(incoming)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)    # flock and the sleep that inherited the lock
        holder.wait()
    result, rc, output = ansible.run('orthanc_backup_prune', params)
    assert rc == 0 and result['partials_removed'] == ['20990101T000000Z.partial'], output


# 9. A configuration that does not describe the running Orthanc stops nothing.
def test_a_configuration_naming_another_orthancs_port_stops_nothing(make_orthanc, ansible, repository, tmp_path):
    mine, other = make_orthanc('mine'), make_orthanc('other')
    wrong = tmp_path / 'wrong.json'
    wrong.write_text(json.dumps({'HttpPort': other.port, 'StorageDirectory': mine.storage_dir}))
    pids = mine.pid(), other.pid()
    result, rc, output = ansible.run('orthanc_backup', mine.module_params(
        config=str(wrong), repository=repository, instance='pacs'))
    assert rc != 0 and 'runs the configuration %s, not %s' % (other.config, wrong) in result['msg']
    assert 'Nothing was stopped' in result['msg'] and (mine.pid(), other.pid()) == pids
    assert mine.answers() and other.answers() and complete_backups(repository) == []


def test_an_empty_configuration_stops_nothing(loaded, ansible, repository, tmp_path):
    orthanc, before = loaded
    empty = tmp_path / 'empty' / 'orthanc.json'
    empty.parent.mkdir()
    empty.write_text('')
    pid = orthanc.pid()
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(
        config=str(empty), repository=repository, instance='pacs'))
    assert rc != 0 and 'nothing was stopped' in result['msg'].lower(), result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == before and complete_backups(repository) == []


# Clear errors instead of silence: input, message, nothing changed.
def write_config(tmp_path, values):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(values))
    return str(path)


def without_listing(tmp_path, backup):
    os.unlink(os.path.join(backup['path'], 'manifest-files.jsonl.gz'))
    return {'backup': backup['backup_id']}


BAD_INPUTS = [
    ('orthanc_backup', lambda tmp, o, b: {'instance': 'pacs\n1'}, 'cannot name a backup folder'),
    ('orthanc_backup', lambda tmp, o, b: {'instance': '-rf'}, 'cannot name a backup folder'),
    ('orthanc_backup', lambda tmp, o, b: {'instance': 'a#b?c%d'}, 'cannot name a backup folder'),
    ('orthanc_backup', lambda tmp, o, b: {'instance': '   '}, 'cannot name a backup folder'),
    ('orthanc_backup', lambda tmp, o, b: {'repository': 'relative/backups'}, 'is not an absolute path'),
    ('orthanc_restore', lambda tmp, o, b: {'instance': 'a\\b'}, 'cannot name a backup folder'),
    ('orthanc_backup', lambda tmp, o, b: {'config': write_config(tmp, {'HttpPort': 'abc'})},
     "HttpPort in the configuration .* is 'abc', not a TCP port"),
    ('orthanc_backup_prune', lambda tmp, o, b: {}, 'No retention policy was given'),
    ('orthanc_backup_prune', lambda tmp, o, b: {'keep_last': -1}, 'cannot be negative'),
    ('orthanc_audit', lambda tmp, o, b: {'min_age': -5}, 'min_age cannot be negative'),
    ('orthanc_resend', lambda tmp, o, b: {'since': '20260101', 'until': 'tomorrow'},
     "until 'tomorrow' is neither a date"),
    ('orthanc_resend', lambda tmp, o, b: {'since': '20260105', 'until': '2026-01-01'}, 'is before since'),
    ('orthanc_backup_verify', lambda tmp, o, b: without_listing(tmp, b), r'listing of files \(.*\) is missing'),
    ('orthanc_restore', lambda tmp, o, b: without_listing(tmp, b), r'listing of files \(.*\) is missing'),
]
MODULE_PARAMS = {
    'orthanc_backup': lambda orthanc, repository: orthanc.module_params(repository=repository, instance='pacs'),
    'orthanc_restore': lambda orthanc, repository: orthanc.module_params(repository=repository, instance='pacs'),
    'orthanc_backup_prune': lambda orthanc, repository: {'repository': repository, 'instance': 'pacs'},
    'orthanc_backup_verify': lambda orthanc, repository: {'repository': repository, 'instance': 'pacs'},
    'orthanc_audit': lambda orthanc, repository: {'config': orthanc.config},
    'orthanc_resend': lambda orthanc, repository: {'config': orthanc.config},
}


@pytest.mark.parametrize('module, bad, message', BAD_INPUTS,
                         ids=['%s-%d' % (module, number) for number, (module, bad, message) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_and_changes_nothing(backed_up, ansible, repository, tmp_path, module, bad, message):
    orthanc, backup, live = backed_up
    params = MODULE_PARAMS[module](orthanc, repository)
    params.update(bad(tmp_path, orthanc, backup))
    before, pid = tree(repository), orthanc.pid()
    result, rc, output = ansible.run(module, params)
    assert rc != 0 and result.get('failed'), output
    assert re.search(message, result['msg']), result['msg']
    assert orthanc.pid() == pid and orthanc.md5s() == live and tree(repository) == before
    assert not os.path.exists(os.path.join(ansible.workdir, 'relative'))


def test_latest_says_which_newer_backup_it_skipped(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    newer, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    with open(os.path.join(newer['path'], 'manifest.json'), 'w') as handle:
        handle.write('{"truncated')
    result, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and result['backup_id'] == backup['backup_id'], output
    warning = 'Backup folder %s of instance "pacs" is left alone' % newer['backup_id']
    assert any(warning in text for text in result['warnings']), output


def test_verify_cuts_its_problem_list_and_counts_them_all(backed_up, ansible, repository):
    orthanc, backup, live = backed_up
    for path in storage_files(os.path.join(backup['path'], 'storage'))[:3]:
        os.unlink(path)
    result, rc, output = ansible.run('orthanc_backup_verify', {'repository': repository, 'instance': 'pacs',
                                                               'list_limit': 2})
    assert rc != 0 and len(result['problems']) == 2 and result['problems_count'] == 3


IMPOSTOR = '''
import http.server, sys
class Heard(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2], 'a') as log:
            log.write('%s %r\\n' % (self.path, self.headers.get('Authorization')))
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.end_headers()
        self.wfile.write(b'{}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Heard).serve_forever()
'''


def test_a_user_who_takes_orthancs_port_while_it_is_stopped_gets_no_credentials(backed_up, ansible, repository):
    """Issue 32, item 8: the probes sent Orthanc's credentials to whatever answered on its port, and an answer made
    the module take a local user's program for Orthanc. Here that user wins the race for the port while the
    restore has Orthanc stopped (the start command starts their program instead)."""
    orthanc, backup, live = backed_up
    folder = tempfile.mkdtemp(prefix='orthanc-ops-impostor-')
    os.chmod(folder, 0o777)
    try:
        script, heard = os.path.join(folder, 'impostor.py'), os.path.join(folder, 'heard')
        with open(script, 'w') as handle:
            handle.write(IMPOSTOR)
        start = ('setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 %s %d %s </dev/null >/dev/null 2>&1 &'
                 % (script, orthanc.port, heard))
        result, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
            repository=repository, instance='pacs', start_command=start))
        assert rc != 0 and 'is held by another program (pid' in result['msg'], output
        with open(heard) as handle:
            requests = handle.read().splitlines()
        assert requests and all(line.endswith(' None') for line in requests), requests
    finally:
        subprocess.run(['pkill', '-f', 'orthanc-ops-impostor-'], check=False)
        shutil.rmtree(folder, ignore_errors=True)
    time.sleep(0.5)
    orthanc.start()
    assert orthanc.md5s() == live    # the previous data was put back
