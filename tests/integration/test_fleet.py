# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backup and restore playbooks over real SSH on a fleet of four Orthanc hosts (SQLite,
PostgreSQL index, MySQL index, and one whose stop command fails) and a backup host."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from fleet import Fleet, Sshd
from harness import MysqlDatabase, Orthanc, PostgresDatabase, RestServer, listed_files, make_instances, mounted

from ansible_collections.orthanc_ops.backup.plugins.module_utils._authentication import BackupKey

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

ORTHANC_HOSTS = ('site-sqlite', 'site-broken', 'centre-pg', 'centre-mysql')
# Copies planted on the backup host for centre-pg, to see its retention applied there.
PLANTED = ['2026%02d%02dT010000Z' % (month, day) for month in (9, 10) for day in (1, 15, 28)]


def central_ids(root, host):
    return sorted(name for name in os.listdir(os.path.join(root, 'central', host)) if not name.startswith('.'))


def read_report(root):
    with open(os.path.join(root, 'report', 'report.json')) as handle:
        report = json.load(handle)
    return report, dict((row['host'], row) for row in report['hosts'])


def recap(output):
    """{host: failed tasks} from the PLAY RECAP of an ansible-playbook run (localhost left out)."""
    found = {}
    for line in output.split('PLAY RECAP', 1)[1].splitlines():
        if ' : ok=' in line and not line.startswith('localhost'):
            found[line.split()[0]] = int(line.split('failed=')[1].split()[0])
    return found


def plant_copies(central, host, ids, key_file):
    """Old copies of ``host`` on the backup host, signed with the fleet's backup key (the first run made it): a
    retention policy counts them."""
    with open(key_file) as handle:
        key = BackupKey(handle.read().strip())
    for backup_id in ids:
        folder = os.path.join(central, host, backup_id)
        os.makedirs(folder)
        with open(os.path.join(folder, 'manifest.json'), 'w') as handle:
            json.dump(key.seal({'status': 'complete', 'format': 1, 'backup_id': backup_id, 'instance': host,
                                'counts': {}, 'files': {}}), handle)


@pytest.fixture(scope='module')
def fleet(tmp_path_factory, collections_root):
    root = str(tmp_path_factory.mktemp('fleet'))
    suffix = os.urandom(3).hex()
    databases = [PostgresDatabase('fleet_pg_' + suffix), MysqlDatabase('fleet_my_' + suffix)]
    servers = {
        'site-sqlite': Orthanc(os.path.join(root, 'site-sqlite')),
        'site-broken': Orthanc(os.path.join(root, 'site-broken')),      # in the first batch of two
        'centre-pg': Orthanc(os.path.join(root, 'centre-pg'), database=databases[0]),
        'centre-mysql': Orthanc(os.path.join(root, 'centre-mysql'), database=databases[1]),
    }
    sshd = Sshd(os.path.join(root, 'sshd'), ['127.0.0.%d' % number for number in range(2, 8)])
    fleet = Fleet(root, sshd, collections_root)
    try:
        for number, (name, server) in enumerate(servers.items(), start=2):
            server.start()
            server.upload(make_instances(patients=2, studies=1, series=2, instances=3))
            broken = {'orthanc_backup_mode': 'cold', 'orthanc_backup_stop_command': '/bin/false',
                      'orthanc_restore_stop_command': server.stop_command} if name == 'site-broken' else {}
            fleet.add_orthanc(name, '127.0.0.%d' % number, server, **broken)
        fleet.hosts['centre-pg'].update(orthanc_backup_repository_keep_last=2, orthanc_backup_repository_keep_monthly=2)
        fleet.add_host('backup1', '127.0.0.6', 'backup')
        fleet.add_host('drill1', '127.0.0.7', 'drill')      # reads backup1's repository as a NAS mount
        fleet.common_vars = {
            'orthanc_backup_hosts': 'orthanc', 'orthanc_backup_serial': 2,
            'orthanc_backup_repository_host': 'backup1',
            'orthanc_backup_repository_path': os.path.join(root, 'central'),
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
        plant_copies(os.path.join(root, 'central'), 'centre-pg', PLANTED, os.path.join(root, 'backup.key'))
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
    assert report['summary']['attention'].startswith('1 of 4 host(s) need attention: site-broken (backup failed, ')
    assert fleet.servers['site-broken'].answers()
    assert {rows[host]['backend'] for host in ('site-sqlite', 'centre-pg', 'centre-mysql')} == {
        'sqlite', 'postgresql', 'mysql'}
    for host in ('site-sqlite', 'centre-pg', 'centre-mysql'):
        row = rows[host]
        assert row['status'] == 'ok' and not row['past_rpo'] and row['verification'].startswith(
            'copy verified on backup1'), row
        assert row['backup_id'] in central_ids(fleet.root, host)
        assert fleet.servers[host].answers()
        # Signed with the key the first run made on the controller, and the copy checked with it there.
        assert row['authenticated'] is True
        with open(os.path.join(fleet.root, 'central', host, row['backup_id'], 'manifest.json')) as handle:
            assert json.load(handle)['authentication']['algorithm'] == 'hmac-sha256'
    assert os.stat(os.path.join(fleet.root, 'backup.key')).st_mode & 0o777 == 0o600
    rc, output, dummy = fleet.runs[0]
    assert 'one was made on the controller in %s' % os.path.join(fleet.root, 'backup.key') in output
    assert not os.path.exists(os.path.join(fleet.root, 'central', 'site-broken'))


def test_second_run_ships_only_new_files(fleet):
    rc, output, dummy = fleet.runs[1]
    assert rc == 2, output
    (first, first_rows), (second, second_rows) = fleet.reports
    sqlite_first, sqlite_second = first_rows['site-sqlite'], second_rows['site-sqlite']
    assert sqlite_second['status'] == 'ok' and sqlite_second['backup_id'] != sqlite_first['backup_id']
    # Only the two new instances travel again with the index (larger than these small instances, so bytes
    # do not compare), the configuration and the manifest: the old instances are links to the first copy.
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
    assert '<p class="attention">1 of 4 host(s) need attention: site-broken (backup failed' in dom
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
    # The restore role takes the backup role's settings (repository host, path, SSH options, service).
    rc, output, dummy = fleet.run_playbook('restore', dict(fleet.common_vars, orthanc_restore_hosts='site-sqlite'))
    assert rc == 0, output
    assert server.md5s() == expected and len(expected) == 14


def test_restore_another_hosts_backup_onto_a_new_host(fleet):
    """site-broken (SQLite) takes the place of site-sqlite: orthanc_restore_instance names the lost server."""
    extra = dict(fleet.common_vars, orthanc_restore_hosts='site-broken', orthanc_restore_instance='site-sqlite')
    local = os.path.join(fleet.root, 'site-broken', 'repository', 'site-sqlite')
    before = fleet.servers['site-broken'].md5s()
    # A dry run on the new host, which holds no backup of site-sqlite yet, says what would come.
    rc, output, dummy = fleet.run_playbook('restore', extra, check=True)
    latest = central_ids(fleet.root, 'site-sqlite')[-1]
    assert rc == 0 and 'Would bring backup %s of instance site-sqlite' % latest in output, output
    assert not os.path.exists(local) and fleet.servers['site-broken'].md5s() == before

    rc, output, dummy = fleet.run_playbook('restore', extra)
    assert rc == 0, output
    assert fleet.servers['site-broken'].md5s() == fleet.before['site-sqlite']


def ssh(fleet, key, address, *command):
    """Run ``command`` on the fleet host at ``address`` as root, logged in with ``key`` only."""
    return subprocess.run(['ssh', '-p', str(fleet.sshd.port), '-i', key, '-o', 'IdentitiesOnly=yes',
                           '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
                           '-o', 'LogLevel=ERROR', 'root@' + address] + list(command),
                          capture_output=True, text=True, timeout=60, check=False)


def central_md5s(root, host):
    """{path: MD5} of every file of ``host``'s copies on the backup host."""
    found = {}
    for current, dummy, names in os.walk(os.path.join(root, 'central', host)):
        for name in names:
            with open(os.path.join(current, name), 'rb') as handle:
                found[os.path.join(current, name)] = hashlib.md5(handle.read()).hexdigest()
    return found


def test_root_on_an_orthanc_host_cannot_reach_the_backup_hosts_copies(fleet):
    """The guide's layout, the default: the backup host pulls. Root on site-sqlite, with every private key that
    host holds, cannot log in to backup1; the backup host's own key is let into site-sqlite only to read its
    repository; after a ransomware run there (storage encrypted, the local copy of a backup forged) the copies on
    backup1 are untouched, the forged copy does not stand in for them, and the restore from them brings back
    every MD5."""
    host, address, backup1 = 'site-sqlite', fleet.hosts['site-sqlite']['ansible_host'], fleet.hosts['backup1']['ansible_host']
    server, before = fleet.servers[host], central_md5s(fleet.root, host)
    assert before
    # Every private key on the Orthanc host: its SSH host key, and any key file in its folders.
    held = [fleet.sshd.host_key] + [os.path.join(current, name)
                                    for current, dummy, names in os.walk(os.path.join(fleet.root, host))
                                    for name in names if open(os.path.join(current, name), 'rb').read(40).startswith(
                                        b'-----BEGIN OPENSSH PRIVATE KEY')]
    assert not any(value for name, value in fleet.hosts[host].items() if name.endswith('ssh_args'))
    for key in held:
        attempt = ssh(fleet, key, backup1, 'rm', '-rf', os.path.join(fleet.root, 'central'))
        assert attempt.returncode == 255 and 'Permission denied' in attempt.stderr, (key, attempt)
    # The backup host's key, as the role let it into site-sqlite: rrsync, read-only, in the repository only.
    pull_key = fleet.hosts[host]['orthanc_backup_repository_ssh_key']
    with open(fleet.sshd.authorized_keys(address)) as handle:
        assert 'restrict,command="/usr/bin/rrsync -ro %s"' % fleet.hosts[host]['orthanc_backup_repository'] in handle.read()
    assert ssh(fleet, pull_key, address, 'id').returncode != 0
    rsh = 'ssh -p %d -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no ' \
          '-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR' % (fleet.sshd.port, pull_key)
    write = subprocess.run(['rsync', '-r', '--rsh', rsh, fleet.sshd.config, 'root@%s:/%s/planted' % (address, host)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert write.returncode != 0 and not os.path.exists(
        os.path.join(fleet.hosts[host]['orthanc_backup_repository'], host, 'planted')), write
    outside = os.path.join(fleet.root, 'outside-copy')
    subprocess.run(['rsync', '--rsh', rsh, 'root@%s:/etc/hostname' % address, outside],
                   capture_output=True, timeout=60, check=False)
    assert not os.path.exists(outside)

    # The ransomware run on site-sqlite: every stored file encrypted, and the local copy of the newest backup
    # rewritten and signed again (root there sees the backup key when the modules run).
    for current, dummy, names in os.walk(server.storage_dir):
        for name in names:
            with open(os.path.join(current, name), 'r+b') as handle:
                data = handle.read()
                handle.seek(0)
                handle.write(bytes(byte ^ 0x5A for byte in data))
    latest = central_ids(fleet.root, host)[-1]
    local = os.path.join(fleet.root, host, 'repository', host)
    if not os.path.isdir(os.path.join(local, latest)):      # the wiped host's restore left one there
        shutil.copytree(os.path.join(fleet.root, 'central', host, latest), os.path.join(local, latest))
    with open(os.path.join(local, latest, 'manifest.json')) as handle:
        manifest = json.load(handle)
    manifest.pop('authentication')
    manifest['host'] = 'forged'
    with open(os.path.join(fleet.root, 'backup.key')) as handle:
        forged = BackupKey(handle.read().strip()).seal(manifest)
    with open(os.path.join(local, latest, 'manifest.json'), 'w') as handle:
        json.dump(forged, handle)
    assert central_md5s(fleet.root, host) == before
    server.wipe()
    server.start()
    rc, output, dummy = fleet.run_playbook('restore', dict(fleet.common_vars, orthanc_restore_hosts=host))
    assert rc == 2 and 'has another manifest than the backup on backup1' in output, output
    assert server.md5s() == {}
    # As the message says: the forged copy moved away, the restore copies the backup host's.
    os.rename(local, local + '-forged')
    rc, output, dummy = fleet.run_playbook('restore', dict(fleet.common_vars, orthanc_restore_hosts=host))
    assert rc == 0, output
    assert server.md5s() == fleet.before[host]
    # The restore's write access is taken back: the key reads the repository only again.
    with open(fleet.sshd.authorized_keys(address)) as handle:
        lines = handle.read().splitlines()
    assert len([line for line in lines if 'orthanc-ops-repository@' in line]) == 1
    assert [line for line in lines if 'orthanc-ops-repository@' in line][0].startswith('restrict,command="/usr/bin/rrsync -ro ')


def test_the_old_push_layout_warns_and_lets_the_host_delete_copies(fleet):
    """Asked for, the Orthanc host pushes with its own key to backup1: the role warns, and root on that host
    deletes a copy on the backup host with the key it pushes with."""
    host, backup1 = 'site-sqlite', fleet.hosts['backup1']['ansible_host']
    rc, output, dummy = fleet.run_playbook('backup', dict(
        fleet.common_vars, orthanc_backup_hosts=host, orthanc_backup_repository_pull=False,
        orthanc_backup_repository_ssh_args=fleet.sshd.ssh_args))
    assert rc == 0, output
    assert 'WARNING: %s pushes its copy to backup1 with its own SSH access there' % host in output
    oldest = central_ids(fleet.root, host)[0]
    attack = ssh(fleet, fleet.sshd.client_key, backup1, 'rm', '-rf', os.path.join(fleet.root, 'central', host, oldest))
    assert attack.returncode == 0 and oldest not in central_ids(fleet.root, host), attack
    # The next run finds the copy gone although retention did not remove it, once.
    for found in (True, False):
        rc, output, dummy = fleet.run_playbook('backup', dict(fleet.common_vars, orthanc_backup_hosts=host))
        assert rc == 0 and ('backups gone outside retention: %s' % host in output) is found, output
        with open(os.path.join(fleet.root, 'report', 'report.html')) as handle:
            assert ('%s (on backup1)' % oldest in handle.read()) is found


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
        json.dump(dict((key, value) for key, value in fleet.env().items() if key.startswith(('ANSIBLE_', 'ORTHANC_OPS_'))),
                  handle)
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


def test_copies_can_be_pulled_to_the_controller(fleet):
    """No SSH server on the receiving side: the controller (localhost) runs rsync and reaches the host."""
    controller = os.path.join(fleet.root, 'controller')
    rc, output, dummy = fleet.run_playbook('backup', dict(
        fleet.common_vars, orthanc_backup_hosts='site-sqlite', orthanc_backup_repository_host='localhost',
        orthanc_backup_repository_pull=True, orthanc_backup_repository_path=controller))
    assert rc == 0, output
    report, rows = read_report(fleet.root)
    row = rows['site-sqlite']
    assert row['status'] == 'ok' and row['verification'].startswith('copy verified on localhost'), row
    assert [name for name in os.listdir(os.path.join(controller, 'site-sqlite')) if not name.startswith('.')] == [
        row['backup_id']]
    manifest = json.load(open(os.path.join(controller, 'site-sqlite', row['backup_id'], 'manifest.json')))
    assert manifest['counts']['instances'] == 14


def test_hosts_after_too_many_failures_are_skipped(fleet):
    """One host at a time, at most 10 % failed: once site-broken (second) fails, the rest are left alone."""
    rc, output, dummy = fleet.run_playbook('backup', dict(
        fleet.common_vars, orthanc_backup_serial=1, orthanc_backup_max_fail_percentage=10))
    assert rc == 2, output
    report, rows = read_report(fleet.root)
    assert [rows[host]['status'] for host in ORTHANC_HOSTS] == ['ok', 'failed', 'skipped', 'skipped']
    assert report['summary']['skipped'] == 2 and 'more than 10% of the hosts failed' in rows['centre-pg']['error']
    assert recap(output) == {'site-sqlite': 0, 'site-broken': 1, 'centre-pg': 0, 'centre-mysql': 0}
    assert all(fleet.servers[host].answers() for host in ORTHANC_HOSTS)


def test_audit_playbook_finds_and_quarantines_an_orphan(fleet):
    """Every host is audited while its Orthanc runs; an old unreferenced file on one host fails it until cleaned."""
    server = fleet.servers['centre-pg']
    orphan = os.path.join(server.storage_dir, 'ab', 'cd', 'abcd0000-0000-4000-8000-000000000000')
    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    with open(orphan, 'wb') as handle:
        handle.write(b'left behind by a resend')
    os.utime(orphan, (0, 0))
    extra = dict(fleet.common_vars, orthanc_audit_hosts='orthanc')
    rc, output, dummy = fleet.run_playbook('audit', extra)
    assert rc == 2 and recap(output) == {'site-sqlite': 0, 'site-broken': 0, 'centre-pg': 1, 'centre-mysql': 0}, output
    assert 'The storage of centre-pg is not sound: 1 orphans were only reported' in output
    assert os.path.exists(orphan)
    rc, output, dummy = fleet.run_playbook('audit', dict(extra, orthanc_audit_orphans='quarantine'))
    assert rc == 0 and not os.path.exists(orphan), output
    assert os.path.exists(os.path.join(server.storage_dir + '-quarantine'))
    assert all(fleet.servers[host].answers() for host in ORTHANC_HOSTS)


def test_the_backup_host_pushes_the_copies_off_site(fleet, tmp_path):
    """The layout the README recommends: the backup host pushes the copies it verified, two hosts at once into
    one restic repository that neither has created yet; the Orthanc hosts need no restic credentials."""
    server = RestServer(str(tmp_path))
    password = 'fleet off-site password'
    try:
        extra = dict(fleet.common_vars, orthanc_backup_hosts='site-sqlite:centre-pg',
                     orthanc_backup_offsite_repository=server.params['offsite_repository'],
                     orthanc_backup_offsite_password=password)
        rc, output, dummy = fleet.run_playbook('backup', extra)
        assert rc == 0, output
        assert password not in output
        report, rows = read_report(fleet.root)
        assert sorted(rows) == ['centre-pg', 'site-sqlite'] and report['summary']['offsite_past_rpo'] == []
        for row in rows.values():
            assert row['offsite'] and row['offsite_backup'] == row['backup_id'], row
        environment = dict(os.environ, RESTIC_REPOSITORY=server.params['offsite_repository'], RESTIC_PASSWORD=password)
        snapshots = json.loads(subprocess.run(['restic', 'snapshots', '--json'], env=environment, capture_output=True,
                                              check=True).stdout)
        # restic read the backup folders in the backup host's repository: the copies verified there went off site.
        assert sorted(path for snapshot in snapshots for path in snapshot['paths']) == [
            os.path.join(fleet.root, 'central', host, rows[host]['backup_id']) for host in ('centre-pg', 'site-sqlite')]
        # Root on an Orthanc host finds no off-site credential there to forget the snapshots with (issue 37).
        for host in ('centre-pg', 'site-sqlite'):
            for current, dummy, names in os.walk(os.path.join(fleet.root, host)):
                for name in names:
                    with open(os.path.join(current, name), 'rb') as handle:
                        assert password.encode() not in handle.read(), os.path.join(current, name)
    finally:
        server.stop()


def test_verify_playbook_checks_both_places_and_finds_a_damaged_copy(fleet):
    """Runs last: it damages a copy on the backup host."""
    extra = dict(fleet.common_vars, orthanc_verify_hosts='orthanc')      # backup1 from orthanc_backup_*
    rc, output, dummy = fleet.run_playbook('verify', extra)
    assert rc == 2 and 'failed=1' in output, output
    assert 'There is no usable complete backup of instance "site-broken"' in output
    assert recap(output) == {'site-sqlite': 0, 'centre-pg': 0, 'centre-mysql': 0, 'site-broken': 1}
    # A drill on the backup host, over SSH, with its own Orthanc package (/etc/orthanc), recorded there.
    rc, output, dummy = fleet.run_playbook('verify', dict(extra, orthanc_verify_hosts='site-sqlite',
                                                          orthanc_verify_drill=True))
    assert rc == 0 and 'passed its drill: Orthanc served it after' in output, output
    with open(os.path.join(fleet.root, 'central', 'site-sqlite', '.drills.json')) as handle:
        drills = json.load(handle)
    assert drills['last']['passed'] and drills['last']['backup_id'] == central_ids(fleet.root, 'site-sqlite')[-1]
    # On a host named for drills, which mounts that repository elsewhere: the drill runs and is recorded there.
    with mounted(os.path.join(fleet.root, 'nas'), '--bind', os.path.join(fleet.root, 'central')) as mount:
        rc, output, dummy = fleet.run_playbook('verify', dict(
            extra, orthanc_verify_hosts='site-sqlite', orthanc_verify_local=False, orthanc_verify_drill=True,
            orthanc_verify_drill_host='drill1', orthanc_verify_drill_repository=mount))
    assert rc == 0 and 'site-sqlite -> drill1' in output and 'passed its drill' in output, output
    with open(os.path.join(fleet.root, 'central', 'site-sqlite', '.drills.json')) as handle:
        assert json.load(handle)['last']['drilled_at'] > drills['last']['drilled_at']
    latest = central_ids(fleet.root, 'centre-mysql')[-1]
    folder = os.path.join(fleet.root, 'central', 'centre-mysql', latest)
    dump = next(name for name in sorted(listed_files(folder)) if name.startswith('db/'))
    with open(os.path.join(folder, dump), 'r+b') as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    rc, output, dummy = fleet.run_playbook('verify', dict(extra, orthanc_verify_hosts='centre-mysql'))
    assert rc == 2 and recap(output) == {'centre-mysql': 1}, output
    # The local backup is sound: only the copy on backup1 is reported, with the file that differs.
    assert 'The backup in %s does not match its manifest' % folder in output
    assert 'The backup in %s' % os.path.join(fleet.root, 'centre-mysql') not in output
    assert '%s has MD5' % dump in output
