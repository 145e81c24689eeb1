# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_drill: a backup restored into a throwaway Orthanc, timed, checked, recorded and torn down."""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
import time

import pytest

from harness import LAYOUTS, make_instances, sandbox_pids

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def backed_up(orthanc, ansible, repository):
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    return backup


def drill_params(orthanc, repository, **extra):
    return dict(config=orthanc.config, repository=repository, instance='pacs', **extra)


def assert_torn_down(repository, database=None):
    assert not glob.glob(os.path.join(repository, 'pacs', '.orthanc-sandbox-*')) and not sandbox_pids(repository)
    if database:
        assert database.databases() == [database.name]


@pytest.mark.parametrize('layout', ['sqlite', 'postgresql-index-and-storage'])
def test_a_good_backup_passes_its_drill(layout, make_database, make_orthanc, ansible, repository):
    database = make_database(*LAYOUTS[layout]) if layout != 'sqlite' else None
    orthanc = make_orthanc(database=database, compression=layout == 'sqlite')
    backup = backed_up(orthanc, ansible, repository)
    before = orthanc.md5s()

    plan, rc, output = ansible.run('orthanc_drill', drill_params(orthanc, repository), check=True)
    assert rc == 0 and plan['plan']['backup_id'] == backup['backup_id'] and not sandbox_pids(repository), output

    drill, rc, output = ansible.run('orthanc_drill', drill_params(orthanc, repository, check_instances=5))
    assert rc == 0 and drill['passed'] is True and drill['problems_count'] == 0, output
    assert drill['backup_id'] == backup['backup_id'] and drill['rto_seconds'] > 0
    assert drill['statistics']['CountInstances'] == len(before) and drill['checked_instances'] == 5
    assert orthanc.md5s() == before    # the production Orthanc is untouched
    assert_torn_down(repository, database)

    listing, rc, output = ansible.run('orthanc_backup_repository', {'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and listing['last_drill'] == listing['last_passed_drill'], output
    assert listing['last_drill'] == dict((key, drill[key]) for key in
                                         ('backup_id', 'drilled_at', 'passed', 'rto_seconds', 'reason'))


def test_a_damaged_backup_fails_its_drill_with_the_reason(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    backup = backed_up(orthanc, ansible, repository)
    drill, rc, output = ansible.run('orthanc_drill', drill_params(orthanc, repository, check_instances=0))
    assert rc == 0 and drill['checked_instances'] == len(orthanc.instances()), output
    folder = os.path.join(repository, 'pacs', backup['backup_id'])
    damaged = sorted(glob.glob(os.path.join(folder, 'storage', '*', '*', '*')))[0]
    with open(damaged, 'r+b') as handle:    # same size, one byte changed
        handle.seek(300)
        byte = handle.read(1)
        handle.seek(300)
        handle.write(bytes([byte[0] ^ 0xff]))

    failed, rc, output = ansible.run('orthanc_drill', drill_params(orthanc, repository))
    assert rc != 0 and failed['passed'] is False and 'The drill of backup %s failed' % backup['backup_id'] in failed['msg']
    assert os.path.relpath(damaged, folder) in failed['reason'] and 'MD5' in failed['reason'], output
    assert_torn_down(repository)
    with open(os.path.join(repository, 'pacs', '.drills.json')) as handle:
        record = json.load(handle)
    assert record['last']['passed'] is False and record['last']['reason'] == failed['reason']
    assert record['last_passed']['drilled_at'] == drill['drilled_at']

    # A planted record is untrusted: what is not a drill is not reported.
    with open(os.path.join(repository, 'pacs', '.drills.json'), 'w') as handle:
        json.dump({'last': {'backup_id': '../../etc', 'drilled_at': 'x', 'passed': True}, 'last_passed': []}, handle)
    listing, rc, output = ansible.run('orthanc_backup_repository', {'repository': repository, 'instance': 'pacs'})
    assert rc == 0 and listing['last_drill'] is None and listing['last_passed_drill'] is None, output


def test_the_verify_role_drills_and_the_report_shows_it(make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    common = {'orthanc_backup_config': orthanc.config, 'orthanc_backup_repository': repository,
              'orthanc_backup_instance': 'pacs', 'orthanc_backup_service_manager': 'command',
              'orthanc_backup_stop_command': orthanc.stop_command, 'orthanc_backup_start_command': orthanc.start_command,
              'orthanc_backup_report_dir': str(tmp_path / 'report'), 'orthanc_backup_hosts': 'localhost',
              'orthanc_backup_drill_max_age_days': 7}
    orthanc.upload(make_instances())
    rc, output = ansible.run_playbook('backup', common)
    assert rc == 0, output
    with open(tmp_path / 'report' / 'report.json') as handle:
        row = json.load(handle)['hosts'][0]
    assert row['last_drill'] is None and row['drill_overdue'] is True    # never drilled: flagged

    rc, output = ansible.run_playbook('verify', dict(common, orthanc_verify_hosts='localhost', orthanc_verify_drill=True,
                                                     orthanc_verify_drill_config=orthanc.config))
    assert rc == 0 and 'passed its drill: Orthanc served it after' in output, output
    rc, output = ansible.run_playbook('backup', common)
    assert rc == 0, output
    with open(tmp_path / 'report' / 'report.json') as handle:
        report = json.load(handle)
    row = report['hosts'][0]
    assert row['last_drill']['passed'] is True and row['last_drill']['rto_seconds'] > 0, row
    assert row['drill_overdue'] is False and report['summary']['drill_overdue'] == []
    with open(tmp_path / 'report' / 'report.html') as handle:
        assert '%s\npassed, RTO' % row['last_drill']['drilled_at'] in handle.read()
    assert_torn_down(repository)


def test_a_backup_where_others_can_write_is_drilled_in_a_private_folder(make_orthanc, ansible, repository, tmp_path):
    """Issue 32: root makes the throwaway Orthanc's folder beside the backup and writes into it by name. Where another
    account can write there, it could swap that folder for a link meanwhile: the sandbox then goes to the module's
    private temporary folder (the files copied, not linked), and the drill still passes."""
    orthanc = make_orthanc()
    backup = backed_up(orthanc, ansible, repository)
    shared = str(tmp_path / 'shared')
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    copy = shutil.copytree(backup['path'], os.path.join(shared, backup['backup_id']))
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.update(name for name in os.listdir(shared) if name.startswith('.orthanc-sandbox-'))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        drill, rc, output = ansible.run('orthanc_drill', {'config': orthanc.config, 'src': copy})
    finally:
        done.set()
        watcher.join()
    assert rc == 0 and drill['passed'] is True, output
    assert not seen and os.listdir(shared) == [backup['backup_id']]


def test_the_throwaway_orthanc_runs_as_nobody_keeping_only_the_right_to_read(make_orthanc, ansible, repository):
    """It parses what came from a backup: as root, a flaw in a DICOM or index parser would be root's."""
    orthanc = make_orthanc()
    backed_up(orthanc, ansible, repository)
    process, out = ansible.start('orthanc_drill', drill_params(orthanc, repository, check_instances=5))
    status, deadline = None, time.monotonic() + 120
    while status is None and process.poll() is None and time.monotonic() < deadline:
        for pid_file in glob.glob(os.path.join(repository, 'pacs', '.orthanc-sandbox-*', 'orthanc.pid')):
            try:
                with open(pid_file) as handle, open('/proc/%d/status' % int(handle.read()), 'rb') as proc:
                    seen = dict(line.decode().split(':\t', 1) for line in proc if b':\t' in line)
            except (OSError, ValueError):
                continue
            if seen['Name'].startswith('Orthanc'):    # not the shell or setpriv that start it
                status = seen
        time.sleep(0.005)
    output, dummy = process.communicate(timeout=300)
    assert process.returncode == 0 and ansible.result(out)['passed'] is True, output
    assert status is not None, 'the drill\'s Orthanc was never seen'
    assert status['Uid'].split() == ['65534'] * 4 and status['Gid'].split() == ['65534'] * 4
    # CAP_DAC_READ_SEARCH (bit 2) alone, and no way to regain more.
    assert [int(status[key], 16) for key in ('CapEff', 'CapPrm', 'CapBnd')] == [4, 4, 4]
    assert status['NoNewPrivs'].strip() == '1'
