# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_resend between real Orthanc servers over DICOM: a second Orthanc plays the modality."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from harness import free_port, make_instances

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow


def days_ago(days, since=None):
    since = since or datetime.datetime.now(datetime.timezone.utc)
    return (since - datetime.timedelta(days=days)).strftime('%Y%m%d')


OLD = '20250101'


def pixels(orthanc):
    """{instance id: MD5 of its pixel data}: a C-STORE rewrites the file's meta header, never the pixels."""
    return dict((instance, hashlib.md5(orthanc.api('GET', '/instances/%s/frames/0/raw' % instance, raw=True)).hexdigest())
                for instance in orthanc.instances())


@pytest.fixture
def pacs_and_scanner(make_orthanc):
    """A restored Orthanc ('pacs') that lacks recent studies, and the modality that still has them, and the day of
    those studies: yesterday, as the test starts (not as the session started: a run that crosses midnight), so a
    resend since a backup taken today, which looks back one day, fetches them.

    The pacs also knows a modality nobody answers for.
    """
    pacs_port, scanner_port = free_port(), free_port()
    pacs = make_orthanc('pacs', settings={'DicomAet': 'PACS', 'DicomPort': pacs_port, 'DicomModalities': {
        'scanner': ['SCANNER', '127.0.0.1', scanner_port], 'gone': ['GONE', '127.0.0.1', free_port()]}})
    scanner = make_orthanc('scanner', settings={'DicomAet': 'SCANNER', 'DicomPort': scanner_port,
                                                'DicomModalities': {'pacs': ['PACS', '127.0.0.1', pacs_port]}})
    old = make_instances(patients=2, studies=1, series=1, instances=2, study_date=OLD)
    day = days_ago(1)
    recent = make_instances(patients=2, studies=1, series=2, instances=2, study_date=day, first_patient=10)
    scanner.upload(old + recent)
    pacs.upload(old + recent[:1])
    return pacs, scanner, day


def test_resend_fetches_what_the_restore_lacks(pacs_and_scanner, ansible):
    pacs, scanner, recent = pacs_and_scanner
    before = pacs.md5s()
    params = {'config': pacs.config, 'since': recent + 'T020000Z', 'modalities': ['scanner']}

    plan, rc, output = ansible.run('orthanc_resend', params, check=True)
    assert rc == 0 and plan['changed'] is True and plan['study_date_range'] == days_ago(1, datetime.datetime.strptime(recent, '%Y%m%d')) + '-', output
    assert sorted((study['patient_id'], study['local_instances'], study['remote_instances'], study['action'])
                  for study in plan['studies']) == [('P0010', 1, 4, 'would retrieve'), ('P0011', 0, 4, 'would retrieve')]
    assert pacs.md5s() == before

    result, rc, output = ansible.run('orthanc_resend', params)
    assert rc == 0 and result['changed'] is True and result['retrieved'] == 2, output
    assert result['instances_received'] == 7 and result['target_aet'] == 'PACS'
    assert all(study['local_instances_after'] == 4 for study in result['studies'])
    assert pixels(pacs) == pixels(scanner)

    again, rc, output = ansible.run('orthanc_resend', params)
    assert rc == 0 and again['changed'] is False and again['retrieved'] == 0, output
    assert [study['action'] for study in again['studies']] == ['complete', 'complete']


def test_a_dead_modality_does_not_stop_the_others(pacs_and_scanner, ansible):
    pacs, scanner, recent = pacs_and_scanner
    result, rc, output = ansible.run('orthanc_resend', {'config': pacs.config, 'since': '%s-%s-%s' % (recent[:4], recent[4:6], recent[6:])})
    assert rc != 0 and 'Could not resend from gone' in result['msg'], output
    assert list(result['failed_modalities']) == ['gone'] and result['retrieved'] == 2
    assert pixels(pacs) == pixels(scanner) and pacs.answers()
    assert 'OverwriteInstances is false' in output


@pytest.mark.parametrize('params, message', [
    ({'modalities': ['ct9']}, 'knows no modality named ct9; it knows: gone, scanner'),
    ({'since': 'yesterday'}, "since 'yesterday' is neither a date"),
])
def test_bad_input_is_explained(pacs_and_scanner, ansible, params, message):
    pacs, dummy, recent = pacs_and_scanner
    before = pacs.md5s()
    result, rc, output = ansible.run('orthanc_resend', dict({'config': pacs.config, 'since': recent}, **params))
    assert rc != 0 and message in result['msg'], output
    assert pacs.md5s() == before


def test_restore_playbook_resends_and_audits(pacs_and_scanner, ansible, repository):
    """The disaster: a restore brings back the backup; what arrived since comes back from the modality."""
    pacs, scanner, dummy = pacs_and_scanner
    common = {'orthanc_backup_config': pacs.config, 'orthanc_backup_repository': repository,
              'orthanc_backup_instance': 'pacs', 'orthanc_backup_service_manager': 'command',
              'orthanc_backup_stop_command': pacs.stop_command, 'orthanc_backup_start_command': pacs.start_command}
    rc, output = ansible.run_playbook('backup', dict(common, orthanc_backup_hosts='localhost',
                                                     orthanc_backup_report_dir=repository + '-report'))
    assert rc == 0, output
    today = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d')
    arrived = make_instances(patients=1, studies=1, series=1, instances=3, study_date=today, first_patient=20)
    scanner.upload(arrived)
    pacs.upload(arrived)
    expected = pixels(scanner)
    rc, output = ansible.run_playbook('restore', dict(
        common, orthanc_restore_hosts='localhost', orthanc_restore_resend=True,
        orthanc_restore_resend_modalities=['scanner'], orthanc_restore_audit=True))
    assert rc == 0, output
    assert pixels(pacs) == expected
    assert 'orphans (' in output and '0 missing, 0 damaged' in output
