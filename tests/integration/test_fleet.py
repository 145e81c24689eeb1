# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backup and restore playbooks over real SSH on a fleet of four Orthanc hosts (SQLite,
PostgreSQL index, MySQL index, and one whose stop command fails) and a backup host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fleet import Fleet, Sshd
from harness import MysqlDatabase, Orthanc, PostgresDatabase, make_instances

ORTHANC_HOSTS = ('site-sqlite', 'centre-pg', 'centre-mysql', 'site-broken')
# Copies planted on the backup host for centre-pg, to see its retention applied there.
PLANTED = ['2026%02d%02dT010000Z' % (month, day) for month in (9, 10) for day in (1, 15, 28)]


def central_ids(root, host):
    return sorted(name for name in os.listdir(os.path.join(root, 'central', host)) if not name.startswith('.'))


def read_report(root):
    with open(os.path.join(root, 'report', 'report.json')) as handle:
        report = json.load(handle)
    return report, dict((row['host'], row) for row in report['hosts'])


def plant_copies(central, host, ids):
    for backup_id in ids:
        folder = os.path.join(central, host, backup_id)
        os.makedirs(folder)
        with open(os.path.join(folder, 'manifest.json'), 'w') as handle:
            json.dump({'status': 'complete', 'format': 1, 'backup_id': backup_id, 'files': {}}, handle)


@pytest.fixture(scope='module')
def fleet(tmp_path_factory, collections_root):
    root = str(tmp_path_factory.mktemp('fleet'))
    suffix = os.urandom(3).hex()
    databases = [PostgresDatabase('fleet_pg_' + suffix), MysqlDatabase('fleet_my_' + suffix)]
    servers = {
        'site-sqlite': Orthanc(os.path.join(root, 'site-sqlite')),
        'centre-pg': Orthanc(os.path.join(root, 'centre-pg'), database=databases[0]),
        'centre-mysql': Orthanc(os.path.join(root, 'centre-mysql'), database=databases[1]),
        'site-broken': Orthanc(os.path.join(root, 'site-broken')),
    }
    sshd = Sshd(os.path.join(root, 'sshd'), ['127.0.0.%d' % number for number in range(2, 7)])
    fleet = Fleet(root, sshd, collections_root)
    try:
        for number, (name, server) in enumerate(servers.items(), start=2):
            server.start()
            server.upload(make_instances(patients=2, studies=1, series=2, instances=3))
            fleet.add_host(name, '127.0.0.%d' % number, 'orthanc',
                           orthanc_backup_config=server.config,
                           orthanc_backup_repository=os.path.join(root, name, 'repository'),
                           orthanc_backup_service_manager='command',
                           orthanc_backup_stop_command='/bin/false' if name == 'site-broken' else server.stop_command,
                           orthanc_backup_start_command=server.start_command,
                           orthanc_restore_config=server.config,
                           orthanc_restore_repository=os.path.join(root, name, 'repository'),
                           orthanc_restore_service_manager='command',
                           orthanc_restore_stop_command=server.stop_command,
                           orthanc_restore_start_command=server.start_command)
        fleet.hosts['centre-pg'].update(orthanc_backup_repository_keep_last=2, orthanc_backup_repository_keep_monthly=2)
        fleet.add_host('backup1', '127.0.0.6', 'backup')
        fleet.common_vars = {
            'orthanc_backup_hosts': 'orthanc', 'orthanc_backup_serial': 2,
            'orthanc_backup_repository_host': 'backup1',
            'orthanc_backup_repository_path': os.path.join(root, 'central'),
            'orthanc_backup_repository_ssh_args': sshd.ssh_args,
            'orthanc_backup_report_dir': os.path.join(root, 'report'),
            'orthanc_backup_rpo_hours': 24,
        }
        fleet.servers = servers
        fleet.before = dict((name, server.md5s()) for name, server in servers.items())
        fleet.runs = [fleet.run_playbook('backup', fleet.common_vars)]
        fleet.reports = [read_report(root)]
        # Between the runs: one new study on the SQLite site, and old copies of centre-pg on the backup host.
        servers['site-sqlite'].upload(make_instances(patients=1, studies=1, series=1, instances=2, pixels=80))
        fleet.before['site-sqlite'] = servers['site-sqlite'].md5s()
        plant_copies(os.path.join(root, 'central'), 'centre-pg', PLANTED)
        fleet.runs.append(fleet.run_playbook('backup', fleet.common_vars))
        fleet.reports.append(read_report(root))
        yield fleet
    finally:
        fleet.close()
        for server in servers.values():
            server.stop()
        for database in databases:
            database.drop()


def test_first_run_backs_up_good_hosts_and_reports_the_broken_one(fleet):
    rc, output, dummy = fleet.runs[0]
    assert rc == 2, output                      # the broken host fails the run, after the report
    assert 'site-broken' in output and 'failed=1' in output
    report, rows = fleet.reports[0]
    assert sorted(rows) == sorted(ORTHANC_HOSTS)
    assert report['summary']['ok'] == 3 and report['summary']['failed_hosts'] == ['site-broken']
    assert rows['site-broken']['status'] == 'failed' and 'stop' in rows['site-broken']['error'].lower()
    assert rows['site-broken']['past_rpo'] and report['hosts'][0]['host'] == 'site-broken'
    assert fleet.servers['site-broken'].answers()
    assert {rows[host]['backend'] for host in ('site-sqlite', 'centre-pg', 'centre-mysql')} == {
        'sqlite', 'postgresql', 'mysql'}
    for host in ('site-sqlite', 'centre-pg', 'centre-mysql'):
        row = rows[host]
        assert row['status'] == 'ok' and not row['past_rpo'] and row['verification'].startswith(
            'copy verified on backup1'), row
        assert row['backup_id'] in central_ids(fleet.root, host)
        assert fleet.servers[host].answers()
    assert not os.path.exists(os.path.join(fleet.root, 'central', 'site-broken'))


def test_second_run_ships_only_new_files(fleet):
    rc, output, dummy = fleet.runs[1]
    assert rc == 2, output
    (first, first_rows), (second, second_rows) = fleet.reports
    sqlite_first, sqlite_second = first_rows['site-sqlite'], second_rows['site-sqlite']
    assert sqlite_second['status'] == 'ok' and sqlite_second['backup_id'] != sqlite_first['backup_id']
    # Only the two new instances, the index, the configuration and the manifest travel again.
    assert sqlite_second['shipped_bytes'] < sqlite_first['shipped_bytes']
    assert sqlite_second['sent_bytes'] < sqlite_first['sent_bytes']
    folder = os.path.join(fleet.root, 'central', 'site-sqlite', sqlite_second['backup_id'], 'storage')
    links = [os.stat(os.path.join(current, name)).st_nlink for current, dummy, names in os.walk(folder)
             for name in names]
    assert links.count(2) == 12 and links.count(1) == 2      # 12 old instances linked, 2 new ones copied
    print('site-sqlite shipped %d then %d new bytes (%d then %d sent)' % (
        sqlite_first['shipped_bytes'], sqlite_second['shipped_bytes'],
        sqlite_first['sent_bytes'], sqlite_second['sent_bytes']))


def test_retention_on_the_backup_host_keeps_exactly_the_policy(fleet):
    (first, first_rows), (second, second_rows) = fleet.reports
    # keep_last 2: both real copies; keep_monthly 2: November's newest (the second) and October's newest.
    assert central_ids(fleet.root, 'centre-pg') == sorted(
        ['20261028T010000Z', first_rows['centre-pg']['backup_id'], second_rows['centre-pg']['backup_id']])
    assert len(central_ids(fleet.root, 'centre-mysql')) == 2      # no policy there: everything kept


def test_html_report_renders_one_row_per_host(fleet):
    html = os.path.join(fleet.root, 'report', 'report.html')
    screenshot = os.path.join(fleet.root, 'report', 'report.png')
    chromium = ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars']
    dom = subprocess.run(chromium + ['--dump-dom', 'file://' + html], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count('<tr class=') == len(ORTHANC_HOSTS)
    assert '<tr class="failed past-rpo">' in dom and dom.index('site-broken') < dom.index('site-sqlite')
    subprocess.run(chromium + ['--window-size=1400,500', '--screenshot=' + screenshot, 'file://' + html],
                   capture_output=True, timeout=120, check=True)
    with open(screenshot, 'rb') as handle:
        png = handle.read()
    assert png.startswith(b'\x89PNG') and len(png) > 10000


def test_restore_a_wiped_host_from_the_backup_host(fleet):
    server = fleet.servers['site-sqlite']
    expected = fleet.before['site-sqlite']
    server.wipe()
    server.start()
    shutil.rmtree(os.path.join(fleet.root, 'site-sqlite', 'repository'))
    assert server.md5s() == {}
    rc, output, dummy = fleet.run_playbook('restore', {
        'orthanc_restore_hosts': 'site-sqlite', 'orthanc_restore_repository_host': 'backup1',
        'orthanc_restore_repository_path': os.path.join(fleet.root, 'central'),
        'orthanc_restore_repository_ssh_args': fleet.sshd.ssh_args})
    assert rc == 0, output
    assert server.md5s() == expected and len(expected) == 14


def test_ansible_runner_keeps_the_summary_as_artifact_data(fleet):
    """AWX runs playbooks through ansible-runner and keeps set_stats data from the playbook_on_stats event."""
    private = os.path.join(fleet.root, 'runner')
    os.makedirs(os.path.join(private, 'project'))
    os.makedirs(os.path.join(private, 'env'))
    with open(os.path.join(private, 'project', 'backup.yml'), 'w') as handle:
        handle.write('- name: Back up the fleet\n  ansible.builtin.import_playbook: orthanc_ops.backup.backup\n')
    with open(os.path.join(private, 'env', 'extravars'), 'w') as handle:
        json.dump(fleet.common_vars, handle)
    with open(os.path.join(private, 'env', 'envvars'), 'w') as handle:
        json.dump(dict((key, value) for key, value in fleet.env().items() if key.startswith('ANSIBLE_')), handle)
    runner = os.path.join(os.path.dirname(sys.executable), 'ansible-runner')
    process = subprocess.run([runner, 'run', private, '-p', 'backup.yml', '--inventory', fleet.write_inventory(),
                              '--ident', 'awx'], capture_output=True, text=True, timeout=900, check=False)
    assert process.returncode == 2, process.stdout[-3000:] + process.stderr[-3000:]
    events = []
    for name in os.listdir(os.path.join(private, 'artifacts', 'awx', 'job_events')):
        with open(os.path.join(private, 'artifacts', 'awx', 'job_events', name)) as handle:
            events.append(json.load(handle))
    stats = [event for event in events if event.get('event') == 'playbook_on_stats']
    assert len(stats) == 1
    artifacts = stats[0]['event_data']['artifact_data']
    assert artifacts['orthanc_backup_summary']['ok'] == 3
    assert artifacts['orthanc_backup_summary']['failed_hosts'] == ['site-broken']
    assert artifacts['orthanc_backup_hosts_status'] == {
        'site-sqlite': 'ok', 'centre-pg': 'ok', 'centre-mysql': 'ok', 'site-broken': 'failed'}
