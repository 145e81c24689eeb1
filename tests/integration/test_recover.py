# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_recover: studies and patients deleted from a live Orthanc come back from a backup while it serves."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import threading
import time
import urllib.error

import pytest

from harness import (
    LAYOUTS, RELEASES, ContainerOrthanc, Orthanc, container_image, kill_module, make_instances, sandbox_pids)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import alive

# Each takes several seconds or more: make quick leaves them out.
pytestmark = pytest.mark.slow

SANDBOXES = 'pacs/.orthanc-sandbox-*'


class Availability(threading.Thread):
    """Asks the live Orthanc for /system every 20 ms until stopped; remembers every failure."""

    def __init__(self, orthanc):
        super().__init__(daemon=True)
        self.orthanc, self.failures, self.requests, self.done = orthanc, [], 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.orthanc.api('GET', '/system', timeout=5)
                self.requests += 1
            except (OSError, urllib.error.URLError) as exc:
                self.failures.append(repr(exc))
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.join()


def recover_params(orthanc, repository, **extra):
    """The recovery's options: it never stops Orthanc, so it takes no service options."""
    return dict(config=orthanc.config, repository=repository, instance='pacs', **extra)


def study_of(orthanc, patient_id, index=0):
    patient = orthanc.api('POST', '/tools/find', b'{"Level": "Patient", "Query": {"PatientID": "%s"}}'
                          % patient_id.encode())[0]
    study = sorted(orthanc.api('GET', '/patients/%s/studies' % patient), key=lambda found: found['ID'])[index]
    return study


@pytest.mark.parametrize('layout', ['sqlite', 'postgresql-index', 'mysql-index-and-storage'])
def test_deleted_study_and_patient_come_back_while_orthanc_serves(layout, make_database, make_orthanc, ansible,
                                                                  repository):
    database = make_database(*LAYOUTS[layout]) if layout != 'sqlite' else None
    orthanc = make_orthanc(database=database, compression=layout == 'sqlite')
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    before = orthanc.md5s()
    study = study_of(orthanc, 'P0001')
    orthanc.api('DELETE', '/studies/%s' % study['ID'])
    params = recover_params(orthanc, repository, study_instance_uids=[study['MainDicomTags']['StudyInstanceUID']])

    plan, rc, output = ansible.run('orthanc_recover', params, check=True)
    assert rc == 0 and plan['changed'] is True and plan['recovered_instances'] == 4, output
    assert [found['ID'] for found in plan['recovered_studies']] == [study['ID']]
    assert len(orthanc.instances()) == len(before) - 4

    with Availability(orthanc) as availability:
        result, rc, output = ansible.run('orthanc_recover', params)
    assert rc == 0 and result['changed'] is True, output
    assert (result['recovered_instances'], result['skipped_instances']) == (4, 0)
    assert result['recovered_studies'][0]['StudyInstanceUID'] == study['MainDicomTags']['StudyInstanceUID']
    assert result['backup_id'] == backup['backup_id']
    assert orthanc.md5s() == before    # every instance back with its MD5, the others untouched
    assert availability.requests > 0 and not availability.failures

    again, rc, output = ansible.run('orthanc_recover', params)
    assert rc == 0 and again['changed'] is False, output
    assert (again['recovered_instances'], again['skipped_instances']) == (0, 4)

    patient = orthanc.api('POST', '/tools/find', b'{"Level": "Patient", "Query": {"PatientID": "P0002"}}')[0]
    orthanc.api('DELETE', '/patients/%s' % patient)
    result, rc, output = ansible.run('orthanc_recover', recover_params(
        orthanc, repository, patient_ids=['P0002'], accession_numbers=['NOT-IN-BACKUP']))
    assert rc == 0 and result['recovered_instances'] == 8, output
    assert result['not_found'] == ['accession_numbers NOT-IN-BACKUP']
    assert orthanc.md5s() == before

    assert not glob.glob(os.path.join(repository, SANDBOXES)) and not sandbox_pids(repository)
    if database:
        assert database.databases() == [database.name]


def test_a_killed_recovery_is_cleaned_up_by_the_next(make_database, make_orthanc, ansible, repository):
    database = make_database(*LAYOUTS['postgresql-index'])
    orthanc = make_orthanc(database=database)
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    before = orthanc.md5s()
    for patient in orthanc.api('GET', '/patients'):
        orthanc.api('DELETE', '/patients/%s' % patient)
    params = recover_params(orthanc, repository, missing=True)

    process, dummy = ansible.start('orthanc_recover', params, umask=0)
    deadline = time.monotonic() + 60
    while not glob.glob(os.path.join(repository, SANDBOXES, 'orthanc.pid')):
        assert process.poll() is None and time.monotonic() < deadline, 'the recovery never started its sandbox'
        time.sleep(0.005)
    assert kill_module(process, 'orthanc_recover')
    process.communicate(timeout=60)
    left = sandbox_pids(repository)
    assert left and glob.glob(os.path.join(repository, SANDBOXES))    # what the next run must clean
    # Under umask 000, nothing of the sandbox (its password, the index Orthanc wrote) is open to others.
    for folder in glob.glob(os.path.join(repository, SANDBOXES)):
        modes = [os.lstat(os.path.join(current, name)).st_mode for current, folders, files in os.walk(folder)
                 for name in folders + files] + [os.lstat(folder).st_mode]
        assert modes and not [mode for mode in modes if mode & 0o077], [oct(mode) for mode in modes]
    assert [name for name in database.databases() if '_sandbox_' in name]

    result, rc, output = ansible.run('orthanc_recover', params)
    assert rc == 0 and result['recovered_instances'] + result['skipped_instances'] == len(before), output
    assert orthanc.md5s() == before
    assert not any(alive(pid) for pid in left) and not sandbox_pids(repository)
    assert not glob.glob(os.path.join(repository, SANDBOXES))
    assert database.databases() == [database.name]


def test_a_damaged_file_is_not_recovered_and_the_rest_is(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    before = orthanc.md5s()
    study = study_of(orthanc, 'P0000')
    instances = [instance['ID'] for instance in orthanc.api('GET', '/studies/%s/instances' % study['ID'])]
    uuid = orthanc.api('GET', '/instances/%s/attachments/dicom/info' % instances[0])['Uuid']
    damaged = os.path.join(repository, 'pacs', backup['backup_id'], 'storage', uuid[:2], uuid[2:4], uuid)
    with open(damaged, 'r+b') as handle:    # same size, one byte changed
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xff]))
    orthanc.api('DELETE', '/studies/%s' % study['ID'])

    result, rc, output = ansible.run('orthanc_recover', recover_params(orthanc, repository, resources=[study['ID']]))
    assert rc != 0 and result['problems_count'] == 1 and result['recovered_instances'] == 3, output
    assert instances[0] in result['problems'][0] and 'MD5' in result['problems'][0]
    after = orthanc.md5s()
    assert instances[0] not in after
    assert after == dict((instance, md5) for instance, md5 in before.items() if instance != instances[0])
    assert not glob.glob(os.path.join(repository, SANDBOXES)) and not sandbox_pids(repository)


def test_a_selector_that_would_choose_more_is_refused(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=1, studies=1, series=1, instances=1))
    for option, value, said in (('resources', '../../tools/shutdown', 'is not an Orthanc id'),
                                ('accession_numbers', 'A*', 'holds a wildcard'),
                                ('patient_ids', ' ', 'is empty')):
        result, rc, output = ansible.run('orthanc_recover', recover_params(orthanc, repository, **{option: [value]}))
        assert rc != 0 and said in result['msg'], output
    assert orthanc.answers() and len(orthanc.instances()) == 1
    assert not os.path.exists(repository)


def test_the_recover_playbook_takes_survey_text(make_orthanc, ansible, repository):
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    before = orthanc.md5s()
    studies = [study_of(orthanc, patient) for patient in ('P0000', 'P0002')]
    for study in studies:
        orthanc.api('DELETE', '/studies/%s' % study['ID'])
    survey = {'orthanc_recover_hosts': 'localhost', 'orthanc_backup_config': orthanc.config,
              'orthanc_backup_repository': repository, 'orthanc_backup_instance': 'pacs',
              'orthanc_recover_study_instance_uids': ', '.join(study['MainDicomTags']['StudyInstanceUID']
                                                               for study in studies)}
    rc, output = ansible.run_playbook('recover', survey, check=True)
    assert rc == 0 and 'Would recover 8 instance(s) of 2 study(ies) from %s' % backup['backup_id'] in output, output
    assert len(orthanc.instances()) == len(before) - 8
    rc, output = ansible.run_playbook('recover', survey)
    assert rc == 0 and 'Recovered 8 instance(s) of 2 study(ies)' in output, output
    assert orthanc.md5s() == before
    for unset in ('orthanc_recover_hosts', 'orthanc_recover_study_instance_uids'):
        for value in ('', None):
            rc, output = ansible.run_playbook('recover', dict(survey, **{unset: value}))
            assert rc != 0 and 'Set orthanc_recover_hosts' in output, output


def test_a_planted_sandbox_cannot_turn_the_clean_up_against_the_live_orthanc(make_orthanc, ansible, repository):
    """A folder named like a left-over sandbox, with the live Orthanc's pid and a link to its configuration:
    the clean-up removes the folder and leaves the live Orthanc alone."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    before, pid = orthanc.md5s(), orthanc.pid()
    orthanc.api('DELETE', '/studies/%s' % study_of(orthanc, 'P0000')['ID'])
    planted = os.path.join(repository, 'pacs', '.orthanc-sandbox-0123456789ab')
    os.makedirs(planted)
    with open(os.path.join(planted, 'orthanc.pid'), 'w') as handle:
        handle.write('%d\n' % pid)
    os.symlink(orthanc.config, os.path.join(planted, 'orthanc.json'))

    with Availability(orthanc) as availability:
        result, rc, output = ansible.run('orthanc_recover', recover_params(orthanc, repository, missing=True))
    assert rc == 0 and result['recovered_instances'] == 4, output
    assert orthanc.pid() == pid and not availability.failures and orthanc.md5s() == before
    assert not os.path.lexists(planted) and os.path.exists(orthanc.config)


def test_a_sandbox_another_run_holds_is_left_alone_until_it_is_released(make_orthanc, ansible, repository):
    """Another Orthanc in the same repository, laid out as a sandbox (its orthanc.json, its orthanc.pid) whose
    lock another run holds: a recovery leaves it running; once the lock is free, the next one removes it."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances())
    backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository, instance='pacs'))
    assert rc == 0, output
    folder = os.path.join(repository, 'pacs', '.orthanc-sandbox-abcdefabcdef')
    other = Orthanc(folder)
    other.start()
    try:
        holder = subprocess.Popen(['flock', os.path.join(folder, 'lock'), 'sleep', '300'], start_new_session=True)
        try:
            while subprocess.run(['flock', '-n', os.path.join(folder, 'lock'), 'true'], check=False).returncode == 0:
                time.sleep(0.05)
            result, rc, output = ansible.run('orthanc_recover', recover_params(orthanc, repository, missing=True))
            assert rc == 0 and result['recovered_instances'] == 0, output
            assert other.answers() and os.path.isdir(folder)
        finally:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        pid = other.pid()
        result, rc, output = ansible.run('orthanc_recover', recover_params(orthanc, repository, missing=True))
        assert rc == 0, output
        assert not alive(pid) and not os.path.lexists(folder) and orthanc.answers()
    finally:
        other.stop()


@pytest.mark.parametrize('release', ['trixie', 'forky'])
def test_a_recovered_study_gets_its_labels_back(release, ansible, repository, tmp_path):
    """Issue 33: Orthanc 1.12 and later keep labels in the index only, so the DICOM files of a recovered study do
    not bring them back. Debian 13's Orthanc (1.12) and testing's (1.13), in a container on SQLite: the study, its
    series and its patient get theirs back, and another study keeps its own."""
    orthanc = ContainerOrthanc(str(tmp_path / release), container_image(release))
    try:
        orthanc.start()
        assert orthanc.api('GET', '/system')['Version'].startswith(RELEASES[release][0])
        orthanc.upload(make_instances(patients=2, studies=1, series=2, instances=2))
        study, other = orthanc.api('GET', '/studies')
        details = orthanc.api('GET', '/studies/%s' % study)
        series, patient = details['Series'][0], details['ParentPatient']
        for level, resource, label in (('studies', study, 'urgent'), ('studies', study, 'teaching'),
                                       ('series', series, 'reviewed'), ('patients', patient, 'vip'),
                                       ('studies', other, 'kept')):
            orthanc.api('PUT', '/%s/%s/labels/%s' % (level, resource, label), b'')
        before = orthanc.md5s()
        backup, rc, output = ansible.run('orthanc_backup', orthanc.module_params(repository=repository,
                                                                                 instance='pacs', mode='cold'))
        assert rc == 0, output
        orthanc.api('DELETE', '/studies/%s' % study)    # its patient, who had no other study, goes with it

        recover = {'service_name': orthanc.name, 'repository': repository, 'instance': 'pacs', 'resources': [study]}
        plan, rc, output = ansible.run('orthanc_recover', recover, check=True)
        assert rc == 0 and plan['recovered_labels'] == 4 and study not in orthanc.api('GET', '/studies'), output
        recovered, rc, output = ansible.run('orthanc_recover', recover)
        assert rc == 0 and recovered['recovered_instances'] == 4 and recovered['recovered_labels'] == 4, output
        assert orthanc.md5s() == before
        assert sorted(orthanc.api('GET', '/studies/%s/labels' % study)) == ['teaching', 'urgent']
        assert orthanc.api('GET', '/series/%s/labels' % series) == ['reviewed']
        assert orthanc.api('GET', '/patients/%s/labels' % patient) == ['vip']
        assert orthanc.api('GET', '/studies/%s/labels' % other) == ['kept']
    finally:
        orthanc.remove()
