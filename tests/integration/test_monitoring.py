# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Metrics for node_exporter (read back by prometheus_client's own parser) and healthchecks-style pings
from the backup, audit and verify roles."""

from __future__ import annotations

import http.server
import os
import threading

import pytest

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
              'orthanc_backup_metrics_dir': str(folder), 'orthanc_backup_ping_url': ping_server.url}

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
