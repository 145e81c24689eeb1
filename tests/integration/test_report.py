# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report's history: the runs each host's repository keeps, drawn as a strip per host, with no script
and nothing from the network, on a screen, a phone and A4 paper."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from harness import make_instances

pytestmark = pytest.mark.slow

CHROMIUM = ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
            # Nothing may come from the network: every request would go to a port nobody listens on.
            '--proxy-server=http://127.0.0.1:9', '--proxy-bypass-list=<-loopback>']
ID_FORMAT = '%Y%m%dT%H%M%SZ'
# Where the pictures of the report are kept after the run, beside ansible-test's own output.
ARTEFACTS = os.path.join('tests', 'output', 'artefacts')


def runs_of_a_real_backup(orthanc, ansible, repository):
    """The runs orthanc_backup kept of a good backup and of a failed one (a file lost from the live storage)."""
    params = orthanc.module_params(repository=repository, instance='pacs')
    good, rc, output = ansible.run('orthanc_backup', params)
    assert rc == 0, output
    lost = next(os.path.join(folder, name) for folder, dummy, names in os.walk(orthanc.storage_dir)
                for name in names if len(name) == 36)    # an attachment, named by its uuid
    os.unlink(lost)
    failed, rc, output = ansible.run('orthanc_backup', params)
    assert rc != 0, output
    listing, rc, output = ansible.run('orthanc_backup_repository', {'repository': repository, 'instance': 'pacs',
                                                                    'history_days': 30})
    assert rc == 0, output
    complete, broken = listing['history']
    assert complete['status'] == 'complete' and complete['backup_id'] == good['backup_id']
    assert complete['bytes'] == good['bytes_copied'] + good['bytes_linked'] and complete['pause_seconds'] >= 0
    assert broken['status'] == 'failed' and 'not in the storage folder' in broken['error'] and 'backup_id' not in broken
    return complete, broken


def moved(run, when):
    """``run`` as if it had started at ``when``."""
    started = when.strftime(ID_FORMAT)
    return dict(run, started=started, **({'backup_id': started} if run.get('backup_id') else {}))


def week(run, now, last_day=0, failed=None, failed_day=None):
    """A run a day for the last seven days (the newest ``last_day`` days ago), the one of ``failed_day`` failed."""
    return [moved(failed if day == failed_day else run, now - timedelta(days=day, hours=1))
            for day in range(6, last_day - 1, -1)]


def outcome(host, history, status='ok', **extra):
    good = [run['started'] for run in history if run['status'] == 'complete']
    values = {'host': host, 'instance': host, 'status': status, 'backend': 'sqlite', 'error': None,
              'backup_id': good[-1] if status == 'ok' else None, 'last_good_backup': good[-1],
              'size_bytes': history[-1].get('bytes') or 0, 'copies_elsewhere': True, 'offsite': False,
              'history': history}
    values.update(extra)
    return values


def test_the_report_draws_a_week_of_runs_and_puts_the_hosts_needing_attention_first(
        make_orthanc, ansible, repository, tmp_path):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1))
    complete, broken = runs_of_a_real_backup(orthanc, ansible, repository)
    now = datetime.now(timezone.utc)
    drilled = (now - timedelta(days=1)).strftime(ID_FORMAT)
    passed = {'backup_id': drilled, 'drilled_at': drilled, 'passed': True, 'rto_seconds': 2.5, 'reason': ''}
    failed_drill = dict(passed, passed=False, rto_seconds=None, reason='Orthanc did not start on the backup')
    outcomes = {
        'good-a': outcome('good-a', week(complete, now), last_drill=passed, last_passed_drill=passed),
        'good-b': outcome('good-b', week(complete, now, failed=broken, failed_day=3), last_drill=passed,
                          last_passed_drill=passed),
        'stopped': outcome('stopped', week(complete, now, last_day=2), status='failed',
                           error='Read the Orthanc configuration: no such file', last_drill=passed,
                           last_passed_drill=passed),
        'drill-failed': outcome('drill-failed', week(complete, now), last_drill=failed_drill,
                                last_passed_drill=passed),
    }
    report_dir = str(tmp_path / 'report')
    playbook = [
        {'name': 'The fleet', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'Add the hosts with their outcomes', 'ansible.builtin.add_host': {
                'name': '{{ item.key }}', 'groups': 'fleet', 'ansible_connection': 'local',
                '__orthanc_backup_outcome': '{{ item.value }}'}, 'loop': '{{ outcomes | dict2items }}'}]},
        {'name': 'The report', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'Write it',
             'ansible.builtin.include_role': {'name': 'orthanc_ops.backup.backup', 'tasks_from': 'report'}}]},
    ]
    path = str(tmp_path / 'report.yml')
    with open(path, 'w') as handle:
        json.dump(playbook, handle)
    variables = str(tmp_path / 'vars.json')
    with open(variables, 'w') as handle:
        json.dump({'outcomes': outcomes, 'orthanc_backup_hosts': 'fleet', 'orthanc_backup_report_dir': report_dir,
                   'orthanc_backup_report_history_days': 7, 'orthanc_backup_drill_max_age_days': 7}, handle)
    run = subprocess.run(ansible.command(path) + ['-e', '@' + variables], env=ansible.env(), cwd=ansible.workdir,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '2 of 4 host(s) need attention: stopped (backup failed, no good backup within 26 h); ' \
           'drill-failed (last drill failed).' in run.stdout

    with open(os.path.join(report_dir, 'report.json')) as handle:
        report = json.load(handle)
    rows = dict((row['host'], row) for row in report['hosts'])
    assert [row['host'] for row in report['hosts']] == ['stopped', 'drill-failed', 'good-a', 'good-b']
    assert [len(rows[host]['history']['marks']) for host in ('stopped', 'drill-failed', 'good-a')] == [5, 7, 7]
    # The strip shows the two days without a run, and the failed run where it happened.
    assert 1 - max(mark['x'] for mark in rows['stopped']['history']['marks']) > 2 / 7.0
    assert [mark['status'] for mark in rows['good-b']['history']['marks']].count('failed') == 1
    assert rows['good-a']['history']['marks'][-1]['title'].startswith(rows['good-a']['backup_id'] + ' complete, ')

    html = os.path.join(report_dir, 'report.html')
    with open(html) as handle:
        text = handle.read()
    assert not re.search(r'<script|<link|@import|url\(|(src|href)="?(https?:)?//', text), 'the report reaches out'
    dom = subprocess.run(CHROMIUM + ['--dump-dom', 'file://' + html], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert dom.index('stopped') < dom.index('drill-failed') < dom.index('good-a')
    assert dom.count('<rect class="complete"') == 5 + 7 + 7 + 6 and dom.count('<rect class="failed"') == 1
    os.makedirs(ARTEFACTS, exist_ok=True)
    pictures = {'report-history.png': ['--window-size=1600,700', '--screenshot=%s'],
                'report-history-phone.png': ['--window-size=400,2400', '--screenshot=%s'],
                'report-history-a4.pdf': ['--print-to-pdf=%s', '--no-pdf-header-footer']}
    for name, arguments in pictures.items():
        target = os.path.abspath(os.path.join(ARTEFACTS, name))
        subprocess.run(CHROMIUM + [argument.replace('%s', target) for argument in arguments] + ['file://' + html],
                       capture_output=True, timeout=120, check=True)
        with open(target, 'rb') as handle:
            data = handle.read()
        assert data.startswith(b'%PDF' if name.endswith('.pdf') else b'\x89PNG') and len(data) > 10000, name
