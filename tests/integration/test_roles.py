# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The roles on one host: the package names they install exist and are what a Debian host has, a host that
lacks its database driver gets it, a failed backup fails the host, and a storage encrypted in place is found."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness import MysqlDatabase, local_contents, make_instances


@pytest.mark.parametrize('backend', ['sqlite', 'postgresql', 'mysql'])
def test_package_installation_for_each_backend(ansible, backend):
    """This machine has every package already: the install runs for real and changes nothing."""
    rc, output = ansible.run_tasks([{
        'name': 'Install what the modules need',
        'ansible.builtin.include_role': {'name': 'orthanc_ops.backup._common', 'tasks_from': 'packages'},
        'vars': {'_common_packages_backend': backend},
    }])
    assert rc == 0, output
    assert 'changed=0' in output and 'failed=0' in output, output
    assert 'Install rsync and the database client and driver' in output and 'DEPRECATION' not in output


def test_package_installation_refuses_an_os_family_it_does_not_know(ansible):
    rc, output = ansible.run_tasks([{
        'name': 'Install what the modules need',
        'ansible.builtin.include_role': {'name': 'orthanc_ops.backup._common', 'tasks_from': 'packages'},
        'vars': {'_common_packages_backend': 'postgresql',
                 'ansible_facts': {'os_family': 'Gentoo', 'distribution': 'Gentoo'}},
    }])
    assert rc != 0 and 'knows the package names of Debian and RedHat hosts, not those of localhost (Gentoo' in output
    assert ': Install rsync and the database client' not in output, output    # the task never ran


def test_an_include_of_the_shared_tasks_without_an_input_fails_before_any_task(ansible):
    rc, output = ansible.run_tasks([{
        'name': 'Install what the modules need',
        'ansible.builtin.include_role': {'name': 'orthanc_ops.backup._common', 'tasks_from': 'packages'},
    }])
    assert rc != 0 and '_common_packages_backend' in output and 'required' in output, output
    assert 'Install rsync and the database client' not in output, output


@pytest.fixture
def without_pymysql():
    """This host without the MySQL driver the modules need, as a fresh Debian host is; put back afterwards."""
    subprocess.run(['apt-get', 'remove', '-y', '-q', 'python3-pymysql'], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(['apt-get', 'install', '-y', '-q', 'python3-pymysql'], check=True, capture_output=True)


def driver_installed():
    return subprocess.run(['/usr/bin/python3', '-c', 'import pymysql'], capture_output=True, check=False).returncode == 0


@pytest.mark.destructive
def test_a_host_without_the_driver_gets_it_and_is_backed_up(without_pymysql, make_database, make_orthanc, ansible,
                                                            repository, tmp_path):
    database = make_database(MysqlDatabase, False)
    orthanc = make_orthanc(database=database)
    orthanc.upload(make_instances(patients=1, studies=1))
    assert not driver_installed()
    rc, output = ansible.run_playbook('backup', {
        'orthanc_backup_hosts': 'localhost', 'orthanc_backup_config': orthanc.config,
        'orthanc_backup_repository': repository, 'orthanc_backup_instance': 'pacs',
        'orthanc_backup_service_manager': 'command', 'orthanc_backup_stop_command': orthanc.stop_command,
        'orthanc_backup_start_command': orthanc.start_command, 'orthanc_backup_report_dir': str(tmp_path / 'report')})
    assert rc == 0, output
    assert 'Install rsync and the database client and driver' in output and driver_installed()
    backups = [name for name in os.listdir(os.path.join(repository, 'pacs')) if not name.startswith('.')]
    assert len(backups) == 1 and orthanc.answers()


def test_the_role_fails_a_host_whose_backup_failed_unless_told_not_to(ansible, tmp_path):
    role = {'ansible.builtin.include_role': {'name': 'orthanc_ops.backup.backup'},
            'vars': {'orthanc_backup_config': str(tmp_path / 'nowhere' / 'orthanc.json'),
                     'orthanc_backup_repository': str(tmp_path / 'repository')}}
    rc, output = ansible.run_tasks([role])
    assert rc != 0 and 'The backup of localhost failed: Read the Orthanc configuration' in output, output
    rc, output = ansible.run_tasks([dict(role, vars=dict(role['vars'], orthanc_backup_fail_on_error=False))])
    assert rc == 0 and 'failed=0' in output and 'Fail this host when its backup failed' in output, output


def backup_ids(repository):
    return sorted(name for name in os.listdir(os.path.join(repository, 'pacs')) if not name.startswith('.'))


def test_a_storage_encrypted_in_place_is_not_backed_up_over_the_good_backups(make_orthanc, ansible, tmp_path):
    """A ransomware run encrypts every stored file in place; the next backup finds it (Orthanc never rewrites a
    file), fails and prunes nothing, and the restore of the last good backup brings back every MD5."""
    orthanc = make_orthanc()
    orthanc.upload(make_instances(patients=2, studies=1, series=2, instances=3))
    before = orthanc.md5s()
    repository = str(tmp_path / 'repository')
    common = {'orthanc_backup_config': orthanc.config, 'orthanc_backup_repository': repository,
              'orthanc_backup_instance': 'pacs', 'orthanc_backup_service_manager': 'command',
              'orthanc_backup_stop_command': orthanc.stop_command, 'orthanc_backup_start_command': orthanc.start_command,
              'orthanc_backup_report_dir': str(tmp_path / 'report')}
    backup = dict(common, orthanc_backup_hosts='localhost', orthanc_backup_keep_last=1)
    rc, output = ansible.run_playbook('backup', backup)
    assert rc == 0, output
    good = backup_ids(repository)
    good_files = dict(local_contents(os.path.join(repository, 'pacs', good[0])))

    # The DICOM files only (the index beside them, which Orthanc holds open, makes any backup fail anyway).
    for current, dummy, names in os.walk(orthanc.storage_dir):
        for name in names if current != orthanc.storage_dir else []:
            with open(os.path.join(current, name), 'r+b') as handle:
                data = handle.read()
                handle.seek(0)
                handle.write(bytes(byte ^ 0x5A for byte in data))
    rc, output = ansible.run_playbook('backup', backup)
    assert rc != 0 and 'differ from the MD5 they had when backup %s took them' % good[-1] in output, output
    with open(str(tmp_path / 'report' / 'report.json')) as handle:
        row = json.load(handle)['hosts'][0]
    assert row['status'] == 'failed' and 'ransomware' in row['error']
    # Nothing pruned, nothing added: keep_last 1 did not remove the good backup.
    assert backup_ids(repository) == good
    assert dict(local_contents(os.path.join(repository, 'pacs', good[0]))) == good_files

    rc, output = ansible.run_playbook('restore', dict(common, orthanc_restore_hosts='localhost'))
    assert rc == 0, output
    assert orthanc.md5s() == before and len(before) == 12
