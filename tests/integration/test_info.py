# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""orthanc_info: the configuration read as Orthanc reads it, masked secrets, what the host lacks."""

from __future__ import annotations

import json
import os

import pytest

from harness import PASSWORD, make_instances


def test_info_reads_config_and_rest(make_orthanc, ansible):
    orthanc = make_orthanc(layout='folder', compression=True)
    orthanc.upload(make_instances(patients=1))
    with open(os.path.join(orthanc.config, 'postgresql.json'), 'w') as handle:
        handle.write('{ // index in PostgreSQL\n "PostgreSQL": {"EnableIndex": false, "Password": "pg-secret-42"}}')
    info, rc, output = ansible.run('orthanc_info', {'config': orthanc.config}, verbosity=3)
    assert rc == 0, output
    assert info['index_backend'] == 'sqlite' and info['storage_backend'] == 'filesystem'
    assert info['storage_dir'] == orthanc.storage_dir and info['storage_compression'] is True
    assert info['http_port'] == orthanc.port and info['running'] is True
    assert info['version'] and info['statistics']['CountInstances'] == 8
    assert PASSWORD not in output and PASSWORD not in json.dumps(info)


def test_info_masks_database_passwords(tmp_path, ansible):
    config = tmp_path / 'orthanc.json'
    config.write_text('{"HttpPort": 1, "PostgreSQL": {"EnableIndex": true, "EnableStorage": true, "Host": "db", '
                      '"Password": "pg-secret-42", "ConnectionUri": "postgresql://orthanc:pg-secret-42@db/orthanc"}}')
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)}, verbosity=3)
    assert rc == 0, output
    assert info['index_backend'] == 'postgresql' and info['storage_backend'] == 'postgresql'
    assert info['database']['Host'] == 'db' and info['running'] is False
    assert 'pg-secret-42' not in output and 'pg-secret-42' not in json.dumps(info)


@pytest.mark.parametrize('section, lacking', [
    ('PostgreSQL', ['command pg_dump', 'command pg_restore', 'command rsync']),
    ('MySQL', ['command mariadb-dump or mysqldump', 'command mariadb or mysql', 'command rsync']),
])
def test_info_reports_what_the_host_lacks(tmp_path, ansible, section, lacking):
    """With no client tools on PATH, the roles learn what to install; with them, nothing is missing."""
    config = tmp_path / 'orthanc.json'
    config.write_text('{"HttpPort": 1, "%s": {"EnableIndex": true}}' % section)
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)}, environment={'PATH': str(tmp_path)})
    assert rc == 0 and info['missing_requirements'] == lacking, output
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)})
    assert rc == 0 and info['missing_requirements'] == [], output


@pytest.mark.parametrize('content, message', [
    ('{"HttpPort": 8042,, }', 'is not valid JSON'),
    ('[1, 2]', 'does not hold a JSON object'),
])
def test_info_rejects_bad_configuration(tmp_path, ansible, content, message):
    config = tmp_path / 'orthanc.json'
    config.write_text(content)
    info, rc, output = ansible.run('orthanc_info', {'config': str(config)})
    assert rc != 0 and message in info['msg'] and str(config) in info['msg']


def test_key_in_two_files_is_refused(tmp_path, ansible):
    (tmp_path / 'a.json').write_text('{"HttpPort": 8042}')
    (tmp_path / 'b.json').write_text('/* again */ {"HttpPort": 8043}')
    info, rc, output = ansible.run('orthanc_backup', {'config': str(tmp_path), 'repository': str(tmp_path / 'r')})
    assert rc != 0 and '"HttpPort" is defined in both' in info['msg']
    assert not os.path.exists(tmp_path / 'r')
