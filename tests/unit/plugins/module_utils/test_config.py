# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import Environment, load, strip_comments
from ansible_collections.orthanc_ops.backup.plugins.module_utils._container import command_configuration
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import parse_systemd_environment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._versions import differences, too_old


def test_comments_are_removed_but_not_inside_strings():
    text = '{ // note\n "Url": "http://a//b", /* block\n */ "Glob": "/* not a comment */" }'
    assert json.loads(strip_comments(text)) == {'Url': 'http://a//b', 'Glob': '/* not a comment */'}


def test_escaped_quote_does_not_end_a_string():
    assert json.loads(strip_comments('{"A": "say \\"//hi\\"" // c\n}')) == {'A': 'say "//hi"'}


def test_unterminated_block_comment_is_an_error(tmp_path):
    (tmp_path / 'o.json').write_text('{"A": 1} /* open')
    with pytest.raises(OrthancOpsError, match='not valid JSON'):
        load(str(tmp_path / 'o.json'))


def test_folder_is_merged_and_duplicates_refused(tmp_path):
    (tmp_path / 'a.json').write_text('{"HttpPort": 9000}')
    (tmp_path / 'b.json').write_text('// second\n{"StorageDirectory": "data"}')
    (tmp_path / 'ignored.txt').write_text('not json')
    config = load(str(tmp_path))
    assert config.http_port == 9000
    assert config.storage_dir == str(tmp_path / 'data') and config.index_dir == str(tmp_path / 'data')
    (tmp_path / 'c.json').write_text('{"HttpPort": 9001}')
    with pytest.raises(OrthancOpsError, match='"HttpPort" is defined in both .*a.json and .*c.json'):
        load(str(tmp_path))


def test_relative_paths_resolve_against_the_file_folder(tmp_path):
    (tmp_path / 'orthanc.json').write_text('{"StorageDirectory": "../s", "IndexDirectory": "i"}')
    config = load(str(tmp_path / 'orthanc.json'))
    assert config.storage_dir == str(tmp_path.parent / 's') and config.index_dir == str(tmp_path / 'i')


def test_defaults(tmp_path):
    (tmp_path / 'orthanc.json').write_text('{}')
    config = load(str(tmp_path / 'orthanc.json'))
    assert config.storage_dir == str(tmp_path / 'OrthancStorage') == config.index_dir
    assert config.default_url() == 'http://127.0.0.1:8042' and config.default_credentials() == (None, None)
    assert config.storage_compression is False


def test_url_and_credentials_from_the_configuration(tmp_path):
    (tmp_path / 'orthanc.json').write_text('{"SslEnabled": true, "HttpPort": 443, "RegisteredUsers": {"b": "2", "a": "1"}}')
    config = load(str(tmp_path / 'orthanc.json'))
    assert config.default_url() == 'https://127.0.0.1:443' and config.default_credentials() == ('a', '1')


def test_missing_configuration(tmp_path):
    with pytest.raises(OrthancOpsError, match='does not exist'):
        load(str(tmp_path / 'nope'))


def write(tmp_path, text):
    path = tmp_path / 'orthanc.json'
    path.write_text(text)
    return str(path)


def test_variables_are_expanded_as_orthanc_does(tmp_path):
    path = write(tmp_path, '{"StorageDirectory": "${STORE}", "Name": "${NONE:-dflt}|'
                           "${NONE:-'s q'}\", // ${ONLY_IN_A_COMMENT}\n"
                           '"PostgreSQL": {"Password": "${PW}"}}')
    environment = Environment([('here', {'STORE': '/srv/st', 'PW': 's3cret'})])
    config = load(path, environment)
    assert config.storage_dir == '/srv/st' and config.get('Name') == 'dflt|s q'
    assert config.secrets() == {'s3cret'} and environment.used == {'STORE', 'NONE', 'PW'}


def test_an_unset_variable_names_itself_and_where_the_module_looked(tmp_path):
    path = write(tmp_path, '{"StorageDirectory": "${MISSING}"}')
    with pytest.raises(OrthancOpsError, match=r'uses \$\{MISSING\}, which is set in none of: unit; task'):
        load(path, Environment([('unit', {}), ('task', {'OTHER': '1'})]))


def test_orthancs_own_environment_makes_an_unset_variable_empty(tmp_path):
    path = write(tmp_path, '{"Name": "a${MISSING}b"}')
    assert load(path, Environment([('pid 1', {})], complete=True)).get('Name') == 'ab'


def test_systemd_environment_files_override_environment(tmp_path):
    env_file = tmp_path / 'orthanc.env'
    env_file.write_text('# comment\nSTORE="/from/file"\n; other comment\nEXTRA=\'x y\'\n')
    output = ('Environment=STORE=/from/unit "NAME=with space" LANG=C\n'
              'EnvironmentFiles=-%s (ignore_errors=yes)\n' % env_file)
    assert parse_systemd_environment(output) == {'STORE': '/from/file', 'NAME': 'with space', 'LANG': 'C',
                                                 'EXTRA': 'x y'}


@pytest.mark.parametrize('backup, live, problems', [
    ({'database_version': 6, 'plugins': {'postgresql-index': '4.0'}},
     {'database_version': 6, 'plugins': {'postgresql-index': '4.0'}}, []),
    ({'database_version': 7, 'orthanc_version': '1.13.0'}, {'database_version': 6},
     ['database schema version 6, the backup has 7 (written by Orthanc 1.13.0)']),
    ({'plugins': {'postgresql-index': '6.2', 'dicom-web': '9.0'}}, {'plugins': {'postgresql-index': '4.0', 'dicom-web': '1.0'}},
     ['plugin postgresql-index 4.0, the backup was written by 6.2']),
    ({'plugins': {'mysql-index': '4.9'}}, {'plugins': {'mysql-index': '4.10'}}, []),
    ({'plugins': {'mysql-index': 'mainline'}}, {'plugins': {'mysql-index': '5.1'}},
     ['plugin mysql-index 5.1, the backup was written by mainline']),
    ({}, {'database_version': 6}, []),
])
def test_too_old(backup, live, problems):
    assert too_old(backup, live) == problems


@pytest.mark.parametrize('backup, live, found', [
    ({'orthanc_version': '1.10.1', 'plugins': {'postgresql-index': '4.0', 'dicom-web': '1.0'}},
     {'orthanc_version': '1.10.1', 'plugins': {'postgresql-index': '4.0'}}, []),    # only database plugins count
    ({'orthanc_version': '1.10.1'}, {'orthanc_version': '1.12.4'},
     ['Orthanc 1.12.4, the backup was written by Orthanc 1.10.1']),                # newer differs too
    ({'orthanc_version': '1.10.1', 'plugins': {'mysql-index': '4.3', 'mysql-storage': '4.3'}},
     {'orthanc_version': '1.10.1', 'plugins': {'mysql-index': '5.1'}},
     ['plugin mysql-index 5.1, the backup was written by 4.3', 'plugin mysql-storage missing, the backup was written by 4.3']),
    ({}, {'orthanc_version': '1.10.1'}, []),
])
def test_differences(backup, live, found):
    assert differences(backup, live) == found


@pytest.mark.parametrize('section, layout', [
    ({'Enable': False, 'NamingScheme': '{PatientID}/{UUID}'}, None),
    ({'Enable': True}, None),
    ({'Enable': True, 'NamingScheme': 'OrthancDefault', 'MultipleStorages': {'Storages': {}}}, None),
    ({'Enable': True, 'NamingScheme': '{PatientID}/{StudyInstanceUID}/{UUID}{.ext}'},
     'NamingScheme {PatientID}/{StudyInstanceUID}/{UUID}{.ext}'),
    ({'Enable': True, 'MultipleStorages': {'Storages': {'1': '/mnt/disk1'}}, 'Indexer': {'Enable': True},
      'DelayedDeletion': {'Enable': True}}, 'MultipleStorages, Indexer, DelayedDeletion'),
])
def test_the_advanced_storage_layouts_the_collection_cannot_follow_are_named(tmp_path, section, layout):
    assert load(write(tmp_path, json.dumps({'AdvancedStorage': section}))).unsupported_layout() == layout


@pytest.mark.parametrize('argv, path', [
    (['/usr/sbin/Orthanc', '--verbose', '/etc/orthanc/'], '/etc/orthanc/'),
    (['Orthanc', '--logdir=/var/log/orthanc', 'orthanc.json'], 'orthanc.json'),
    (['/bin/sh', '-c', 'exec Orthanc /tmp/orthanc.json'], None),
    (['/usr/sbin/Orthanc'], None),
])
def test_the_configuration_a_command_line_names(argv, path):
    assert command_configuration(argv) == path


def test_several_configuration_paths_are_refused_by_name():
    with pytest.raises(OrthancOpsError, match=r'reads several configuration paths \(/etc/orthanc/a.json, b.json\)'):
        command_configuration(['/usr/sbin/Orthanc', '/etc/orthanc/a.json', '--verbose', 'b.json'])
