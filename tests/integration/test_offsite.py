# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_offsite against real restic repositories of three kinds: SFTP to the suite's own sshd, a restic
REST server (``rclone serve restic``) and S3-compatible object storage (moto's server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from fleet import Sshd
from harness import (
    RestServer, backup_epoch, descendant_pids, free_port, local_contents, make_instances, module_pids, mounted,
    read_metrics, seed, wait_for_port)

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

PASSWORD = 'correct horse battery staple 7'
S3_KEYS = {'AWS_ACCESS_KEY_ID': 'orthanc-ops-test', 'AWS_SECRET_ACCESS_KEY': 'never-printed-s3-secret-42'}
# In every DICOM file Orthanc stores: 128 bytes of preamble, then the magic word.
DICOM_PREAMBLE = b'\0' * 128 + b'DICM'


class SftpTarget:
    """A folder reached by SFTP through the suite's own sshd, with a key of its own."""

    def __init__(self, root):
        self.sshd = Sshd(os.path.join(root, 'sshd'), ['127.0.0.2'])
        self.folder = os.path.join(root, 'sftp-target')
        command = 'ssh -p %d %s root@127.0.0.2 -s sftp' % (self.sshd.port, self.sshd.ssh_args)
        self.params = {'offsite_repository': 'sftp:root@127.0.0.2:' + self.folder,
                       'offsite_options': {'sftp.command': command}}

    def contents(self):
        return local_contents(self.folder)

    def stop(self):
        self.sshd.stop()


class S3Target:
    """A bucket of its own on the suite's S3-compatible server."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.bucket = 'orthanc-ops-%d' % time.monotonic_ns()
        self.params = {'offsite_repository': 's3:%s/%s/pacs' % (endpoint, self.bucket),
                       'offsite_environment': dict(S3_KEYS)}

    def contents(self):
        import boto3    # moto's dependency, in the test environment only
        client = boto3.client('s3', endpoint_url=self.endpoint, region_name='us-east-1',
                              aws_access_key_id=S3_KEYS['AWS_ACCESS_KEY_ID'],
                              aws_secret_access_key=S3_KEYS['AWS_SECRET_ACCESS_KEY'])
        if self.bucket not in [bucket['Name'] for bucket in client.list_buckets()['Buckets']]:
            return    # restic creates the bucket with the repository
        for page in client.get_paginator('list_objects_v2').paginate(Bucket=self.bucket):
            for item in page.get('Contents', []):
                yield item['Key'], client.get_object(Bucket=self.bucket, Key=item['Key'])['Body'].read()

    def stop(self):
        pass


@pytest.fixture(scope='session')
def s3_endpoint(tmp_path_factory):
    """moto's S3-compatible server, for the whole run (each test takes a bucket of its own)."""
    port = free_port()
    server = os.path.join(os.path.dirname(sys.executable), 'moto_server')
    process = subprocess.Popen([server, '-H', '127.0.0.1', '-p', str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_port(port, process, 'moto_server')
    yield 'http://127.0.0.1:%d' % port
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def make_target(request, tmp_path):
    made = []

    def factory(kind, **options):
        if kind == 's3':
            target = S3Target(request.getfixturevalue('s3_endpoint'))
        else:
            kinds = {'rest': RestServer, 'sftp': SftpTarget}
            target = kinds[kind](str(tmp_path / ('%s-%d' % (kind, len(made)))), **options)
        made.append(target)
        return target
    yield factory
    for target in made:
        target.stop()


def offsite(target, operation, **extra):
    params = {'operation': operation, 'instance': 'pacs', 'offsite_password': PASSWORD}
    params.update(target.params)
    params.update(extra)
    return params


def backup(ansible, orthanc, repository):
    result, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    return result


def tree_state(folder):
    """Every path below ``folder`` with its size and inode: what "untouched" means for local backups."""
    state = {}
    for parent, dirs, names in os.walk(folder):
        for name in dirs + names:
            info = os.lstat(os.path.join(parent, name))
            state[os.path.relpath(os.path.join(parent, name), folder)] = (info.st_size, info.st_ino, info.st_mode)
    return state


@pytest.mark.parametrize('kind', ['sftp', 'rest', 's3'])
def test_push_wipe_pull_restore(kind, make_target, loaded, ansible, repository):
    orthanc, before = loaded
    target = make_target(kind)
    taken = backup(ansible, orthanc, repository)

    plan, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository), check=True)
    assert rc == 0, output
    assert plan['changed'] and plan['initialized'] and plan['backup_id'] == taken['backup_id']
    assert list(target.contents()) == []

    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository), verbosity=4)
    assert rc == 0, output
    assert pushed['changed'] and pushed['initialized'] and pushed['bytes_added'] > 0
    for secret in [PASSWORD] + list(S3_KEYS.values()):
        assert secret not in output
    assert sorted(os.listdir(os.path.join(repository, 'pacs'))) == ['.lock', '.offsite.lock', '.runs.json', taken['backup_id']]

    again, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0, output
    assert again['changed'] is False and again['snapshot_id'] == pushed['snapshot_id']
    assert sorted(os.listdir(os.path.join(repository, 'pacs'))) == ['.lock', '.offsite.lock', '.runs.json', taken['backup_id']]

    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert rc == 0, output
    assert [copy['backup_id'] for copy in held['backups']] == [taken['backup_id']]

    # Encrypted: nothing stored off site reads as DICOM, names a patient or repeats the configuration.
    with open(orthanc.config, 'rb') as handle:
        config_lines = [line.strip() for line in handle.read().splitlines() if len(line.strip()) > 12]
    stored = list(target.contents())
    assert stored
    for name, data in stored:
        assert DICOM_PREAMBLE not in data and b'Test^Patient' not in data, name
        assert not [line for line in config_lines if line in data], name

    shutil.rmtree(repository)
    orthanc.wipe()
    orthanc.start()
    assert orthanc.instances() == []

    pulled, rc, output = ansible.run('orthanc_offsite', offsite(target, 'pull', repository=repository))
    assert rc == 0, output
    assert pulled['changed'] and pulled['backup_id'] == taken['backup_id'] and pulled['files'] == taken['files']
    assert pulled['path'] == taken['path'] and sorted(os.listdir(os.path.join(repository, 'pacs'))) == [
        '.lock', taken['backup_id']]

    restore, rc, output = ansible.run('orthanc_restore', orthanc.module_params(
        repository=repository, instance='pacs', backup=taken['backup_id']))
    assert rc == 0, output
    assert orthanc.md5s() == before

    check, rc, output = ansible.run('orthanc_offsite', offsite(target, 'check', read_data_subset='100%'))
    assert rc == 0 and check['read_data_subset'] == '100%', output


def test_pushes_add_only_what_changed(make_target, make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    # Instances of 1 MB, as a CT or MR slice is: the index, which changes with every backup, stays a small part.
    seed(orthanc, 40, pixels=1024)
    target = make_target('rest')
    first = backup(ansible, orthanc, repository)
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0, output

    unchanged = backup(ansible, orthanc, repository)
    second, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0, output
    assert second['changed'] and second['backup_id'] == unchanged['backup_id'] != first['backup_id']
    assert second['bytes_added'] < 0.01 * second['bytes'], second
    # The previous push's files are linked again at the same place: restic does not read them.
    assert second['files_unmodified'] >= 40

    new_instances = make_instances(patients=1, studies=2, series=2, instances=2, pixels=1024, first_patient=50)
    orthanc.upload(new_instances)
    after = backup(ansible, orthanc, repository)
    third, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0, output
    added = sum(len(data) for data in new_instances)
    # The new files, and the chunks of the SQLite index that changed with them (at most the whole index).
    index = sum(size for dummy, (size, dummy, dummy) in tree_state(os.path.join(after['path'], 'index')).items())
    assert 0.95 * added < third['bytes_added'] < 1.05 * added + index + 100000, (third, added, index)


def test_a_backup_holding_planted_files_or_a_linked_folder_is_refused(make_target, loaded, ansible, repository):
    orthanc, before = loaded
    target = make_target('rest')
    taken = backup(ansible, orthanc, repository)
    storage = os.path.join(taken['path'], 'storage')
    with open(os.path.join(storage, 'planted'), 'w') as handle:
        handle.write('not listed')
    os.symlink('/etc/passwd', os.path.join(storage, 'passwd'))
    refused, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc != 0 and 'cannot be pushed' in refused['msg'], output
    assert 'storage/planted is not listed' in refused['msg'] and 'storage/passwd is a symbolic link' in refused['msg']
    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert rc != 0 and 'there is no restic repository there' in held['msg'], output    # not even created

    os.unlink(os.path.join(storage, 'planted'))
    os.unlink(os.path.join(storage, 'passwd'))
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0 and pushed['changed'], output
    # Pulled under umask 000: still private, folders 0700 and files 0600, as the backup wrote them. A link planted
    # where the copy goes is removed, not written through.
    elsewhere, steered = repository + '-elsewhere', repository + '-steered'
    os.makedirs(os.path.join(elsewhere, 'pacs'))
    os.chmod(os.path.join(elsewhere, 'pacs'), 0o700)
    os.mkdir(steered)
    os.symlink(steered, os.path.join(elsewhere, 'pacs', pushed['backup_id'] + '.partial'))
    pulled, rc, output = ansible.run('orthanc_offsite', offsite(target, 'pull', repository=elsewhere), umask=0)
    assert rc == 0 and pulled['files'] == taken['files'], output
    assert os.listdir(steered) == [] and os.path.isdir(pulled['path']) and not os.path.islink(pulled['path'])
    modes = set((stat.S_ISDIR(mode), mode & 0o777) for dummy, dummy, mode in tree_state(elsewhere).values())
    assert modes == {(True, 0o700), (False, 0o600)}, modes
    shutil.rmtree(elsewhere)

    # A folder of the storage swapped for a link to a folder outside the backup: nothing is pushed.
    second = backup(ansible, orthanc, repository)
    folder = os.path.join(second['path'], 'storage', sorted(os.listdir(os.path.join(second['path'], 'storage')))[0])
    outside = repository + '-outside'
    shutil.copytree(folder, outside)
    shutil.rmtree(folder)
    os.symlink(outside, folder)
    refused, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc != 0 and 'cannot be pushed' in refused['msg'] and 'is a symbolic link' in refused['msg'], output
    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert [copy['backup_id'] for copy in held['backups']] == [taken['backup_id']]
    assert not [name for name in os.listdir(os.path.join(repository, 'pacs')) if name.startswith('.pinned-')]


def test_a_pulled_backup_is_private_whatever_its_snapshot_says(make_target, loaded, ansible, repository):
    """Issue 32, item 7: restic restores a snapshot's owners and modes, which a holder of the off-site password
    chooses. A snapshot whose file is setuid and another user's, in a folder anyone may write, is pulled as the
    module's own: folders 0700, files 0600."""
    orthanc, dummy = loaded
    target = make_target('rest')
    taken = backup(ansible, orthanc, repository)
    storage = os.path.join(taken['path'], 'storage')
    folder = os.path.join(storage, sorted(os.listdir(storage))[0])
    victim = os.path.join(folder, sorted(os.listdir(folder))[0])
    victim = os.path.join(victim, sorted(os.listdir(victim))[0]) if os.path.isdir(victim) else victim
    os.chown(victim, 65534, 65534)
    os.chmod(victim, 0o4755)
    os.chmod(folder, 0o777)
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0 and pushed['changed'], output
    elsewhere = repository + '-elsewhere'
    pulled, rc, output = ansible.run('orthanc_offsite', offsite(target, 'pull', repository=elsewhere))
    assert rc == 0 and pulled['files'] == taken['files'], output
    state = tree_state(pulled['path'])
    assert set((stat.S_ISDIR(mode), mode & 0o7777) for dummy, dummy, mode in state.values()) == {
        (True, 0o700), (False, 0o600)}
    assert set(os.lstat(os.path.join(pulled['path'], path)).st_uid for path in state) == {os.geteuid()}


def test_failures_leave_local_backups_and_the_repository_sound(make_target, loaded, ansible, repository, tmp_path):
    orthanc, before = loaded
    orthanc.upload(make_instances(patients=1, pixels=256))    # 0.5 MB of DICOM: more than the full disk below
    target = make_target('rest')
    backup(ansible, orthanc, repository)
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0, output
    backup(ansible, orthanc, repository)
    local = tree_state(repository)

    wrong, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository,
                                                               offsite_password='not the password'))
    assert rc != 0 and 'the password does not open it' in wrong['msg'], output

    nobody = 'rest:http://127.0.0.1:%d/pacs/' % free_port()
    unreachable, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository,
                                                                     offsite_repository=nobody))
    assert rc != 0 and 'it cannot be reached' in unreachable['msg'], output

    missing, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository,
                                                                 offsite_repository=str(tmp_path / 'none'),
                                                                 initialize=False))
    assert rc != 0 and 'There is no restic repository' in missing['msg'] and not os.path.exists(tmp_path / 'none')

    # A repository on a full disk, and one on a read-only mount: each says so.
    with mounted(str(tmp_path / 'small'), '-t', 'tmpfs', '-o', 'size=200k', 'tmpfs') as small:
        full, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository,
                                                                  offsite_repository=small + '/restic'))
        assert rc != 0 and 'it is full' in full['msg'], output
    shutil.copytree(target.folder, str(tmp_path / 'copy'))
    with mounted(str(tmp_path / 'read-only'), '--bind', '-o', 'ro', str(tmp_path / 'copy')) as read_only:
        refused, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository,
                                                                     offsite_repository=read_only + '/pacs'))
        assert rc != 0 and 'it refuses this change' in refused['msg'], output

    assert tree_state(repository) == local
    check, rc, output = ansible.run('orthanc_offsite', offsite(target, 'check'))
    assert rc == 0, output
    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert [copy['backup_id'] for copy in held['backups']] == [pushed['backup_id']]


def test_a_push_killed_half_way_is_done_again(make_target, make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    seed(orthanc, 200, pixels=256)
    target = make_target('rest', bwlimit='256K')
    first = backup(ansible, orthanc, repository)
    process, out = ansible.start('orthanc_offsite', offsite(target, 'push', repository=repository))
    deadline = time.monotonic() + 60
    while not descendant_pids(process, 'restic --quiet backup'):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()[0]
        time.sleep(0.1)

    # While restic reads the backup, backups go on, and a prune keeps the backup being pushed.
    newer = backup(ansible, orthanc, repository)
    prune = {'repository': repository, 'instance': 'pacs', 'keep_last': 1}
    pruned, rc, output = ansible.run('orthanc_backup_prune', prune)
    assert rc == 0 and pruned['removed'] == [] and pruned['reasons'][first['backup_id']] == ['pinned'], output
    assert descendant_pids(process, 'restic --quiet backup'), 'the push ended before the prune did'
    for pid in module_pids(process, 'orthanc_offsite') + descendant_pids(process, 'restic --quiet backup'):
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)

    target.stop()
    target.start()    # the same server, back at full speed
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=repository))
    assert rc == 0 and pushed['changed'] and pushed['backup_id'] == newer['backup_id'], output
    check, rc, output = ansible.run('orthanc_offsite', offsite(target, 'check', read_data_subset='100%'))
    assert rc == 0, output
    # The killed push's pin holds nothing: the next prune removes the backup, and the pin with the leftovers.
    pruned, rc, output = ansible.run('orthanc_backup_prune', prune)
    assert rc == 0 and pruned['removed'] == [first['backup_id']], output
    assert '.pinned-' + first['backup_id'] in pruned['partials_removed'], output


def test_prune_keeps_exactly_the_policy_among_months_of_copies(make_target, ansible, tmp_path):
    target = make_target('rest')
    environment = dict(os.environ, RESTIC_REPOSITORY=target.params['offsite_repository'], RESTIC_PASSWORD=PASSWORD)
    subprocess.run(['restic', 'init'], env=environment, check=True, capture_output=True)
    folder = tmp_path / 'tiny'
    folder.mkdir()
    ids = ['2026%02d%02dT010000Z' % (month, day) for month in (9, 10, 11) for day in (1, 10, 20, 28)]
    for backup_id in ids:
        (folder / 'manifest.json').write_text(backup_id)
        subprocess.run(['restic', 'backup', '--tag', 'orthanc-instance:pacs', '--tag', 'orthanc-backup:' + backup_id,
                        '.'], cwd=str(folder), env=environment, check=True, capture_output=True)
    params = offsite(target, 'prune', keep_last=2, keep_monthly=2)
    expected = ['20261028T010000Z', '20261120T010000Z', '20261128T010000Z']    # last 2, newest of Nov and Oct

    plan, rc, output = ansible.run('orthanc_offsite', params, check=True)
    assert rc == 0, output
    assert plan['kept'] == expected and len(plan['removed']) == len(ids) - 3

    result, rc, output = ansible.run('orthanc_offsite', params)
    assert rc == 0 and result['removed'] == plan['removed'], output
    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert [copy['backup_id'] for copy in held['backups']] == expected

    again, rc, output = ansible.run('orthanc_offsite', params)
    assert rc == 0 and again['changed'] is False


def test_the_roles_push_report_restore_from_off_site_and_check(make_target, loaded, ansible, repository):
    orthanc, before = loaded
    target = make_target('sftp')
    common = {'orthanc_backup_config': orthanc.config, 'orthanc_backup_repository': repository,
              'orthanc_backup_instance': 'pacs', 'orthanc_backup_service_manager': 'command',
              'orthanc_backup_stop_command': orthanc.stop_command, 'orthanc_backup_start_command': orthanc.start_command,
              'orthanc_backup_offsite_repository': target.params['offsite_repository'],
              'orthanc_backup_offsite_options': target.params['offsite_options'],
              'orthanc_backup_offsite_password': PASSWORD, 'orthanc_backup_keep_last': 3}
    report_dir, metrics_dir = repository + '-report', repository + '-textfile'
    os.makedirs(metrics_dir)
    rc, output = ansible.run_playbook('backup', dict(common, orthanc_backup_hosts='localhost',
                                                     orthanc_backup_report_dir=report_dir,
                                                     orthanc_backup_metrics_dir=metrics_dir))
    assert rc == 0, output
    assert PASSWORD not in output
    with open(os.path.join(report_dir, 'report.json')) as handle:
        row = json.load(handle)['hosts'][0]
    assert row['offsite'] and row['offsite_backup'] == row['backup_id'] and row['offsite_bytes_added'] > 0
    assert row['offsite_age_hours'] < 1 and not row['offsite_past_rpo']
    pushed = read_metrics(metrics_dir, 'offsite')
    assert pushed['orthanc_offsite_last_success_timestamp_seconds'] == backup_epoch(row['backup_id'])
    assert pushed['orthanc_offsite_bytes_added'] == row['offsite_bytes_added']
    with open(os.path.join(report_dir, 'report.html')) as handle:
        assert '%s (' % row['backup_id'] in handle.read()

    shutil.rmtree(repository)
    orthanc.wipe()
    orthanc.start()
    rc, output = ansible.run_playbook('restore', dict(common, orthanc_restore_hosts='localhost',
                                                      orthanc_restore_source='offsite'))
    assert rc == 0, output
    assert orthanc.md5s() == before

    rc, output = ansible.run_playbook('verify', dict(common, orthanc_verify_hosts='localhost',
                                                     orthanc_verify_offsite_read_data_subset='50%'))
    assert rc == 0, output
    assert 'The off-site repository passed restic check (data read: 50%)' in output


def test_copies_pushed_to_an_append_only_repository_survive_the_push_credential(
        loaded, ansible, repository, tmp_path):
    """The pushes go through an append-only REST server, the retention through another endpoint of the same
    repository that may delete: the role keeps exactly its policy, and whoever holds the push credential (root on
    the host that pushes) cannot forget a copy."""
    orthanc, dummy = loaded
    pushing = RestServer(str(tmp_path), append_only=True)
    deleting = RestServer(str(tmp_path))
    try:
        common = {'orthanc_backup_hosts': 'localhost', 'orthanc_backup_config': orthanc.config,
                  'orthanc_backup_repository': repository, 'orthanc_backup_instance': 'pacs',
                  'orthanc_backup_service_manager': 'command', 'orthanc_backup_stop_command': orthanc.stop_command,
                  'orthanc_backup_start_command': orthanc.start_command,
                  'orthanc_backup_report_dir': repository + '-report',
                  'orthanc_backup_offsite_repository': pushing.params['offsite_repository'],
                  'orthanc_backup_offsite_prune_repository': deleting.params['offsite_repository'],
                  'orthanc_backup_offsite_password': PASSWORD, 'orthanc_backup_keep_last': 1}
        for dummy in range(2):
            rc, output = ansible.run_playbook('backup', common)
            assert rc == 0, output
            time.sleep(1)       # backup ids are seconds
        held, rc, output = ansible.run('orthanc_offsite', offsite(pushing, 'list'))
        assert rc == 0 and len(held['backups']) == 1, output

        rc, output = ansible.run_playbook('backup', dict(common, orthanc_backup_offsite_keep_last=0))
        assert rc == 0, output
        held, rc, output = ansible.run('orthanc_offsite', offsite(pushing, 'list'))
        assert len(held['backups']) == 2
        refused, rc, output = ansible.run('orthanc_offsite', offsite(pushing, 'prune', keep_last=1))
        assert rc != 0, output
        after, rc, output = ansible.run('orthanc_offsite', offsite(pushing, 'list'))
        assert after['backups'] == held['backups']
    finally:
        pushing.stop()
        deleting.stop()


def test_two_first_pushes_at_once_create_one_repository(make_target, loaded, ansible, repository):
    """restic's init is not atomic on a REST server: two at once leave a repository neither key opens. Pushes
    on one host take turns to create it."""
    orthanc, before = loaded
    target = make_target('rest')
    second = repository + '-second'
    for folder in (repository, second):
        backup(ansible, orthanc, folder)
    started = [ansible.start('orthanc_offsite', offsite(target, 'push', repository=folder))
               for folder in (repository, second)]
    results = []
    for process, out in started:
        output, dummy = process.communicate(timeout=300)
        assert process.returncode == 0, output
        results.append(ansible.result(out))
    assert sorted(result['initialized'] for result in results) == [False, True]
    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert rc == 0 and len(held['backups']) == 2, output
    check, rc, output = ansible.run('orthanc_offsite', offsite(target, 'check', read_data_subset='100%'))
    assert rc == 0, output
    shutil.rmtree(second)


def test_with_a_key_snapshots_planted_by_a_holder_of_the_password_are_left_alone(make_target, make_orthanc, ansible,
                                                                                 tmp_path):
    """Issue 32, item 7: whoever holds the restic password could tag a snapshot with an id to come (a pull of the
    latest took it), pre-create the id of the next push (which then did nothing), or have a prune forget the real
    snapshots. With a backup key, only the snapshots it sealed count."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    target, key = make_target('rest'), 'offsite-backup-key-of-the-tests'
    local, elsewhere = str(tmp_path / 'local'), str(tmp_path / 'elsewhere')
    params = orthanc.module_params(repository=local, instance='pacs', backup_key=key)
    first, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    pushed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=local, backup_key=key,
                                                                initialize=True))
    assert rc == 0 and pushed['changed'], output
    orthanc.upload(make_instances(patients=1, first_patient=1))
    second, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output

    forged = tmp_path / 'forged'
    forged.mkdir()
    (forged / 'manifest.json').write_text('{}')
    environment = dict(os.environ, RESTIC_REPOSITORY=target.params['offsite_repository'], RESTIC_PASSWORD=PASSWORD)
    for planted in ('29991231T235959Z', second['backup_id'], '20260101T000000Z'):
        subprocess.run(['restic', 'backup', '--tag', 'orthanc-instance:pacs', '--tag', 'orthanc-backup:' + planted,
                        '.'], cwd=str(forged), env=environment, check=True, capture_output=True)

    held, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list', backup_key=key))
    assert rc == 0 and [copy['backup_id'] for copy in held['backups']] == [first['backup_id']], output
    again, rc, output = ansible.run('orthanc_offsite', offsite(target, 'push', repository=local, backup_key=key))
    assert rc == 0 and again['backup_id'] == second['backup_id'] and again['changed'], output
    pruned, rc, output = ansible.run('orthanc_offsite', offsite(target, 'prune', backup_key=key, keep_last=1))
    assert rc == 0 and pruned['kept'] == [second['backup_id']] and pruned['removed'] == [first['backup_id']], output
    pulled, rc, output = ansible.run('orthanc_offsite', offsite(target, 'pull', repository=elsewhere, backup_key=key))
    assert rc == 0 and pulled['backup_id'] == second['backup_id'], output
    # The planted snapshots are all still there, untouched; without the key they are what they claim to be.
    unkeyed, rc, output = ansible.run('orthanc_offsite', offsite(target, 'list'))
    assert [copy['backup_id'] for copy in unkeyed['backups']] == sorted(
        ['20260101T000000Z', second['backup_id'], '29991231T235959Z'])
