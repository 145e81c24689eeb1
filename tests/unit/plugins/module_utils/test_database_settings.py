# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import mysql, postgresql

NO_LOGIN = dict.fromkeys(('login_host', 'login_port', 'login_user', 'login_password', 'login_db', 'login_unix_socket'))


def test_postgresql_uri_is_parsed_and_login_options_win():
    pytest.importorskip('psycopg2')
    section = {'ConnectionUri': 'postgresql://orthanc:s3cret@db.example.org:5433/pacs', 'Host': 'ignored'}
    assert postgresql.settings_for(section, NO_LOGIN) == {
        'host': 'db.example.org', 'port': 5433, 'dbname': 'pacs', 'user': 'orthanc', 'password': 's3cret'}
    login = dict(NO_LOGIN, login_user='backup', login_password='other', login_db='pacs_copy')
    settings = postgresql.settings_for(section, login)
    assert (settings['user'], settings['password'], settings['dbname']) == ('backup', 'other', 'pacs_copy')


def test_postgresql_plugin_fields_and_socket():
    section = {'Host': 'h', 'Port': '6543', 'Database': 'd', 'Username': 'u'}
    settings = postgresql.settings_for(section, dict(NO_LOGIN, login_unix_socket='/run/postgresql'))
    assert settings == {'host': '/run/postgresql', 'port': 6543, 'dbname': 'd', 'user': 'u'}


def test_mysql_socket_from_configuration_unless_a_host_is_given():
    section = {'Host': 'h', 'Port': 3307, 'Database': 'd', 'Username': 'u', 'Password': 'p',
               'UnixSocket': '/var/run/mysqld/mysqld.sock'}
    assert mysql.settings_for(section, NO_LOGIN)['unix_socket'] == '/var/run/mysqld/mysqld.sock'
    over = mysql.settings_for(section, dict(NO_LOGIN, login_host='10.0.0.5'))
    assert over['unix_socket'] is None and over['host'] == '10.0.0.5' and over['port'] == 3307
    assert mysql.settings_for(dict(section, UnixSocket=''), NO_LOGIN)['unix_socket'] is None


def test_a_database_container_is_reached_on_its_own_loopback_at_the_configured_port():
    in_container = dict(NO_LOGIN, database_container='pacs-postgres-1')
    settings = postgresql.settings_for({'Host': 'postgres', 'Port': 5432, 'Password': 'p'}, in_container)
    assert (settings['host'], settings['port'], settings['password']) == ('127.0.0.1', 5432, 'p')
    section = {'Host': 'mariadb', 'Port': 3307, 'UnixSocket': '/run/mysqld/mysqld.sock'}
    settings = mysql.settings_for(section, in_container)
    assert (settings['host'], settings['port'], settings['unix_socket']) == ('127.0.0.1', 3307, None)
    assert mysql.settings_for(section, dict(in_container, login_host='10.0.0.5'))['host'] == '10.0.0.5'
