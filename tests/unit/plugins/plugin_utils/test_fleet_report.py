# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.plugin_utils._fleet_report import build

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def outcome(host, status, last_good, **extra):
    values = {'host': host, 'status': status, 'last_good_backup': last_good}
    values.update(extra)
    return values


def test_hosts_past_the_rpo_come_first_then_failed_ones():
    report = build({
        'a-ok': outcome('a-ok', 'ok', '20261128T110000Z', size_bytes=100, new_bytes=10, shipped_bytes=5),
        'b-failed-recent': outcome('b-failed-recent', 'failed', '20261128T010000Z'),
        'c-failed-old': outcome('c-failed-old', 'failed', '20261125T120000Z'),
        'd-never': None,
        'e-skipped': outcome('e-skipped', 'skipped', '20261128T100000Z'),
    }, rpo_hours=24, now=NOW)
    assert [row['host'] for row in report['hosts']] == [
        'c-failed-old', 'd-never', 'b-failed-recent', 'e-skipped', 'a-ok']
    rows = dict((row['host'], row) for row in report['hosts'])
    assert rows['c-failed-old']['age_hours'] == 72 and rows['c-failed-old']['past_rpo']
    assert rows['d-never']['age_hours'] is None and rows['d-never']['past_rpo']
    assert rows['d-never']['status'] == 'failed' and rows['d-never']['error'].startswith('no outcome')
    assert rows['e-skipped']['backup_id'] is None and rows['e-skipped']['verification'] is None
    assert rows['b-failed-recent']['age_hours'] == 11 and not rows['b-failed-recent']['past_rpo']
    assert report['summary'] == {
        'attention': '3 of 5 host(s) need attention: c-failed-old (backup failed, no good backup within 24 h); '
                     'd-never (backup failed, no good backup within 24 h); b-failed-recent (backup failed).',
        'hosts': 5, 'ok': 1, 'failed': 3, 'incomplete': 0, 'skipped': 1, 'planned': 0,
        'past_rpo': ['c-failed-old', 'd-never'], 'offsite_past_rpo': [], 'drill_overdue': [], 'drill_failed': [],
        'only_local': [], 'disappeared': [], 'changed_backups': [], 'new_bytes_jump': [],
        'failed_hosts': ['b-failed-recent', 'c-failed-old', 'd-never'],
        'incomplete_hosts': [],
        'bytes': 100, 'new_bytes': 10, 'shipped_bytes': 5}
    assert report['generated'] == '2026-11-28T12:00:00Z' and report['rpo_hours'] == 24


def test_an_age_exactly_at_the_rpo_is_within_it():
    report = build({'a': outcome('a', 'ok', '20261127T120000Z')}, rpo_hours=24, now=NOW)
    assert report['hosts'][0]['age_hours'] == 24 and not report['hosts'][0]['past_rpo']


def test_hosts_whose_newest_off_site_copy_is_old_come_first_too():
    report = build({
        'a-fine': outcome('a-fine', 'ok', '20261128T110000Z', offsite=True, offsite_backup='20261128T110000Z'),
        'b-old-copy': outcome('b-old-copy', 'ok', '20261128T110000Z', offsite=True, offsite_backup='20261126T110000Z'),
        'c-no-copy': outcome('c-no-copy', 'ok', '20261128T110000Z', offsite=True, offsite_backup=None),
        'd-local-only': outcome('d-local-only', 'ok', '20261128T100000Z'),
    }, rpo_hours=24, now=NOW)
    assert [row['host'] for row in report['hosts']] == ['b-old-copy', 'c-no-copy', 'a-fine', 'd-local-only']
    rows = dict((row['host'], row) for row in report['hosts'])
    assert rows['b-old-copy']['offsite_age_hours'] == 49 and not rows['b-old-copy']['past_rpo']
    assert rows['a-fine']['offsite_age_hours'] == 1 and not rows['a-fine']['offsite_past_rpo']
    assert rows['d-local-only']['offsite_age_hours'] is None and not rows['d-local-only']['offsite_past_rpo']
    assert report['summary']['offsite_past_rpo'] == ['b-old-copy', 'c-no-copy']
    assert report['summary']['past_rpo'] == []


def drill(drilled_at, passed, rto=3.5, reason=''):
    return {'backup_id': '20261120T230000Z', 'drilled_at': drilled_at, 'passed': passed, 'rto_seconds': rto,
            'reason': reason}


def test_hosts_without_a_recent_passed_drill_are_overdue():
    recent, old = drill('20261127T120000Z', True), drill('20261101T120000Z', True)
    failed = drill('20261128T060000Z', False, None, 'storage/ab/cd/abcd: MD5 ...')
    outcomes = {
        'recent': outcome('recent', 'ok', '20261128T110000Z', last_drill=recent, last_passed_drill=recent),
        'old': outcome('old', 'ok', '20261128T110000Z', last_drill=old, last_passed_drill=old),
        'failing': outcome('failing', 'ok', '20261128T110000Z', last_drill=failed, last_passed_drill=recent),
        'never': outcome('never', 'ok', '20261128T110000Z'),
    }
    report = build(outcomes, rpo_hours=24, now=NOW, drill_max_age_days=7)
    rows = dict((row['host'], row) for row in report['hosts'])
    assert rows['recent']['drill_age_days'] == 1 and not rows['recent']['drill_overdue']
    assert rows['old']['drill_age_days'] == 27 and rows['old']['drill_overdue']
    assert rows['failing']['last_drill']['passed'] is False and not rows['failing']['drill_overdue']
    assert rows['never']['drill_age_days'] is None and rows['never']['drill_overdue']
    assert report['summary']['drill_overdue'] == ['never', 'old'] and report['summary']['drill_failed'] == ['failing']
    assert report['drill_max_age_days'] == 7
    assert build(outcomes, rpo_hours=24, now=NOW)['summary']['drill_overdue'] == []


def test_hosts_whose_only_copies_are_local_are_named():
    report = build({
        'alone': outcome('alone', 'ok', '20261128T110000Z', copies_elsewhere=False),
        'shipped': outcome('shipped', 'ok', '20261128T110000Z', copies_elsewhere=True),
        'unknown': None,
    }, rpo_hours=24, now=NOW)
    assert report['summary']['only_local'] == ['alone']


def test_one_sentence_says_which_hosts_need_attention_and_why_and_they_come_first():
    failed = drill('20261128T060000Z', False, None, 'damaged')
    report = build({
        'a-fine': outcome('a-fine', 'ok', '20261128T110000Z', copies_elsewhere=True),
        'b-alone': outcome('b-alone', 'ok', '20261128T110000Z', copies_elsewhere=False),
        'c-drill': outcome('c-drill', 'ok', '20261128T110000Z', copies_elsewhere=True, last_drill=failed),
        'd-gone': outcome('d-gone', 'incomplete', '20261128T110000Z', disappeared=['20261120T010000Z (local)']),
        'e-changed': outcome('e-changed', 'ok', '20261128T110000Z', copies_elsewhere=True, new_bytes_jump=True,
                             changed_backups=['20261121T010000Z (on backup1)']),
    }, rpo_hours=26, now=NOW)
    assert [row['host'] for row in report['hosts']] == ['d-gone', 'b-alone', 'c-drill', 'e-changed', 'a-fine']
    assert report['summary']['attention'] == (
        '4 of 5 host(s) need attention: d-gone (files missing from its storage, backups gone outside retention); '
        'b-alone (only local copies); c-drill (last drill failed); e-changed (backups changed after they were '
        'taken, new bytes jumped).')
    assert report['summary']['changed_backups'] == report['summary']['new_bytes_jump'] == ['e-changed']
    fine = build({'a-fine': outcome('a-fine', 'ok', '20261128T110000Z')}, rpo_hours=26, now=NOW)
    assert fine['summary']['attention'] == 'All 1 host(s) are fine: each has a good backup within the 26 h RPO.'


def test_a_hosts_runs_are_placed_in_the_window_and_scaled_to_its_largest_backup():
    runs = [
        {'started': '20261120T010000Z', 'status': 'complete', 'bytes': 50},          # before the window
        {'started': '20261121T120000Z', 'status': 'complete', 'backup_id': '20261121T120000Z', 'bytes': 100,
         'new_bytes': 100, 'duration_seconds': 12.5, 'pause_seconds': 0.004},
        {'started': '20261125T000000Z', 'status': 'failed', 'error': 'Orthanc did not answer'},
        {'started': '20261124T120000Z', 'status': 'incomplete', 'bytes': 200, 'new_bytes': 20},
        {'started': 'yesterday', 'status': 'complete'},                               # not well formed
    ]
    report = build({'a': outcome('a', 'ok', '20261124T120000Z', history=runs)}, rpo_hours=26, now=NOW,
                   history_days=7)
    drawn = report['hosts'][0]['history']
    assert report['history_days'] == 7 and drawn['days'] == 7 and drawn['runs'] == 3
    assert [(mark['x'], mark['status']) for mark in drawn['marks']] == [
        (0.0, 'complete'), (0.4286, 'incomplete'), (0.5, 'failed')]
    assert drawn['marks'][0]['title'] == '20261121T120000Z complete, 12.5 s, paused 0.004 s, 100 B (100 B new)'
    assert drawn['marks'][2]['title'] == '20261125T000000Z failed, Orthanc did not answer'
    assert drawn['sizes'] == [{'x': 0.0, 'size': 0.5, 'new': 0.5}, {'x': 0.4286, 'size': 1.0, 'new': 0.1}]
    assert drawn['largest'] == '200 B'
    assert build({'a': outcome('a', 'ok', '20261124T120000Z', history=runs)}, rpo_hours=26,
                 now=NOW)['hosts'][0]['history']['marks'] == []
