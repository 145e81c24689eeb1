# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The alerting rules' thresholds come from the report's variables; what they fire on is tested with promtool
on real metrics (tests/integration/test_monitoring.py)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.orthanc_ops.backup.plugins.filter.alert_rules import alert_rules


def rules_of(*args):
    return dict((rule['alert'], rule) for rule in alert_rules(*args)['groups'][0]['rules'])


def test_thresholds_are_the_reports_own():
    rules = rules_of(26, 7, 0.25)
    assert rules['OrthancBackupPastRPO']['expr'] == 'time() - orthanc_backup_last_success_timestamp_seconds > 93600'
    assert rules['OrthancOffsitePastRPO']['expr'].endswith('> 93600')
    assert rules['OrthancBackupNotRunning']['expr'].endswith('> 187200')
    assert rules['OrthancDrillOverdue']['expr'].endswith('> 604800')
    assert rules['OrthancBackupPauseTooLong']['expr'] == 'orthanc_backup_pause_seconds > 0.25'
    assert '26 h' in rules['OrthancBackupPastRPO']['annotations']['description']


def test_every_alert_says_what_to_do_and_where_its_runbook_is():
    rules = rules_of(1.5, 0, 1, 'https://wiki.example.org/orthanc-alerts')
    assert 'OrthancDrillOverdue' not in rules and len(rules) == 11    # no drills required, no drill age alert
    for name, rule in rules.items():
        assert rule['labels']['severity'] in ('warning', 'critical')
        assert set(rule['annotations']) == {'summary', 'description', 'runbook', 'runbook_url'}
        assert rule['annotations']['runbook_url'] == 'https://wiki.example.org/orthanc-alerts#' + name.lower()
    assert '1.5 h' in rules['OrthancBackupPastRPO']['annotations']['description']


@pytest.mark.parametrize('args, message', [
    ((0,), 'rpo_hours must be a positive number'),
    (('soon',), 'rpo_hours must be a positive number'),
    ((26, -1), 'drill_max_age_days must be a non-negative number'),
    ((26, 0, None), 'max_pause_seconds must be a non-negative number'),
])
def test_thresholds_that_are_not_numbers_are_refused(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        alert_rules(*args)
