# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Metrics for node_exporter (read back by prometheus_client's own parser) and healthchecks-style pings
from the backup, audit and verify roles."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading

import pytest
import yaml

from harness import backup_epoch, make_instances, read_metrics

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


class PingServer(http.server.ThreadingHTTPServer):
    """A healthchecks stand-in on the loopback: remembers (path, body) of every request."""

    def __init__(self):
        pings = self.pings = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                pings.append((self.path, self.rfile.read(length).decode()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/check' % self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def ping_server():
    server = PingServer()
    yield server
    server.shutdown()
    server.server_close()


def test_backup_audit_and_drill_tell_the_monitoring(make_orthanc, ansible, repository, ping_server, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    folder = tmp_path / 'textfile'
    folder.mkdir()
    common = {'orthanc_backup_config': orthanc.config, 'orthanc_backup_repository': repository,
              'orthanc_backup_instance': 'pacs', 'orthanc_backup_service_manager': 'command',
              'orthanc_backup_stop_command': orthanc.stop_command, 'orthanc_backup_start_command': orthanc.start_command,
              'orthanc_backup_report_dir': str(tmp_path / 'report'), 'orthanc_backup_hosts': 'localhost',
              'orthanc_backup_metrics_dir': str(folder), 'orthanc_backup_ping_url': ping_server.url,
              'orthanc_backup_alert_rules_dir': str(tmp_path), 'orthanc_backup_drill_max_age_days': 7}

    rc, output = ansible.run_playbook('backup', common)
    assert rc == 0, output
    assert ping_server.pings == [('/check/start', ''), ('/check', 'ok')]
    good = read_metrics(str(folder), 'backup')
    backup_id = sorted(name for name in os.listdir(os.path.join(repository, 'pacs')) if not name.startswith('.'))[-1]
    assert good['orthanc_backup_success'] == 1 and good['orthanc_backup_live_missing_files'] == 0
    assert good['orthanc_backup_last_success_timestamp_seconds'] == backup_epoch(backup_id)
    assert good['orthanc_backup_files'] > len(orthanc.instances()) and good['orthanc_backup_bytes'] > 0
    assert 0 < good['orthanc_backup_duration_seconds'] < 600
    assert not [name for name in os.listdir(folder) if not name.endswith('.prom')]    # no partial file left

    # A failed backup: the failure is pinged with its reason, and the last success stays the one before.
    del ping_server.pings[:]
    rc, output = ansible.run_playbook('backup', dict(common, orthanc_backup_config=str(tmp_path / 'nowhere.json')))
    assert rc != 0, output
    assert [path for path, body in ping_server.pings] == ['/check/start', '/check/fail']
    assert 'Read the Orthanc configuration' in ping_server.pings[1][1]
    failed = read_metrics(str(folder), 'backup')
    assert failed['orthanc_backup_success'] == 0
    assert failed['orthanc_backup_last_success_timestamp_seconds'] == backup_epoch(backup_id)
    assert failed['orthanc_backup_last_run_timestamp_seconds'] > good['orthanc_backup_last_run_timestamp_seconds']

    rc, output = ansible.run_playbook('audit', dict(common, orthanc_audit_hosts='localhost'))
    assert rc == 0, output
    audit = read_metrics(str(folder), 'audit')
    assert audit['orthanc_audit_healthy'] == 1 and audit['orthanc_audit_missing_files'] == 0

    rc, output = ansible.run_playbook('verify', dict(common, orthanc_verify_hosts='localhost', orthanc_verify_drill=True,
                                                     orthanc_verify_drill_config=orthanc.config))
    assert rc == 0, output
    drill = read_metrics(str(folder), 'drill')
    assert drill['orthanc_drill_passed'] == 1 and drill['orthanc_drill_rto_seconds'] > 0
    assert drill['orthanc_drill_last_success_timestamp_seconds'] == drill['orthanc_drill_last_run_timestamp_seconds']

    # A drill of a damaged backup fails, and says so.
    newest = os.path.join(repository, 'pacs', backup_id, 'index', 'index')
    with open(newest, 'r+b') as handle:
        handle.seek(200)
        handle.write(b'damaged by the test')
    rc, output = ansible.run_playbook('verify', dict(common, orthanc_verify_hosts='localhost', orthanc_verify_drill=True,
                                                     orthanc_verify_drill_config=orthanc.config))
    assert rc != 0, output
    failed_drill = read_metrics(str(folder), 'drill')
    assert failed_drill['orthanc_drill_passed'] == 0

    alerts_fire_as_promised(str(tmp_path), good=(good, audit, drill), failed_backup=failed, failed_drill=failed_drill)


def _moved(metrics):
    """``metrics`` with their times moved so that the run that wrote them ran at second 0 of a promtool test."""
    origin = metrics[next(name for name in metrics if name.endswith('_last_run_timestamp_seconds'))]
    return dict((name, value - origin if name.endswith('_timestamp_seconds') else value)
                for name, value in metrics.items())


def _series(runs, hours, every_hour=False):
    """promtool input series, a sample a minute for ``hours``, of the metrics of ``runs`` (as the modules wrote
    them); ``every_hour``: the run is repeated every hour, its times moving on."""
    found = []
    for metrics in runs:
        for name, value in sorted(_moved(metrics).items()):
            moving = every_hour and name.endswith('_timestamp_seconds')
            values = ' '.join('%r+0x59' % (value + (3600 * hour if moving else 0)) for hour in range(hours))
            found.append({'series': '%s{orthanc_instance="pacs"}' % name, 'values': values})
    return found


def _firing(names, at):
    severity = dict((rule['alert'], rule['labels']['severity']) for rule in _firing.rules)
    return {'expr': 'ALERTS{alertstate="firing"}', 'eval_time': at, 'exp_samples': [
        {'labels': 'ALERTS{alertname="%s",alertstate="firing",orthanc_instance="pacs",severity="%s"}'
                   % (name, severity[name]), 'value': 1} for name in names]}


def alerts_fire_as_promised(folder, good, failed_backup, failed_drill):
    """The rules the backup role wrote, checked by promtool and run on what the modules wrote: a good host fires
    nothing; one whose backups stopped fires the RPO alert once the RPO is past, and nothing else, until its stale
    metrics file fires the staleness alert at twice the RPO; a failed backup and a failed drill fire their alerts;
    metrics that stop coming fire theirs."""
    promtool = shutil.which('promtool')
    assert promtool, 'promtool is missing: make setup installs it (Debian package prometheus)'
    rules = os.path.join(folder, 'orthanc-ops.rules.yml')
    checked = subprocess.run([promtool, 'check', 'rules', rules], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and 'SUCCESS: 12 rules found' in checked.stdout, checked.stdout + checked.stderr
    with open(rules) as handle:
        _firing.rules = yaml.safe_load(handle)['groups'][0]['rules']
    backup = good[0]
    tests = [
        {'name': 'a good host', 'interval': '1m', 'input_series': _series(good, 48, every_hour=True),
         'promql_expr_test': [_firing([], '47h30m')]},
        # No run since: the RPO alert once the RPO is past; the file is stale, and says so at twice the RPO.
        {'name': 'backups stopped', 'interval': '1m', 'input_series': _series([backup], 60),
         'promql_expr_test': [_firing([], '25h50m'), _firing(['OrthancBackupPastRPO'], '26h15m'),
                              _firing(['OrthancBackupPastRPO'], '51h50m'),
                              _firing(['OrthancBackupNotRunning', 'OrthancBackupPastRPO'], '52h15m')]},
        {'name': 'a failed backup', 'interval': '1m', 'input_series': _series([failed_backup], 1),
         'promql_expr_test': [_firing(['OrthancBackupFailed'], '5m')]},
        {'name': 'a failed drill', 'interval': '1m', 'input_series': _series([backup, failed_drill], 1),
         'promql_expr_test': [_firing(['OrthancDrillFailed'], '5m')]},
        {'name': 'metrics that stop coming', 'interval': '1m', 'input_series': _series([backup], 1),
         'promql_expr_test': [_firing([], '59m'), _firing(['OrthancMetricsMissing'], '1h20m')]},
    ]
    test_file = os.path.join(folder, 'alerts-test.yml')
    with open(test_file, 'w') as handle:
        yaml.safe_dump({'rule_files': [rules], 'evaluation_interval': '1m', 'tests': tests}, handle)
    result = subprocess.run([promtool, 'test', 'rules', test_file], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and 'SUCCESS' in result.stdout, result.stdout + result.stderr
