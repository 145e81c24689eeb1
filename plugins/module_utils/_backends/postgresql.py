# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The orthanc-postgresql plugin: hot dumps with pg_dump inside an exported snapshot, restores
into a fresh database swapped in by renames."""

from __future__ import annotations

import os
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import (
    DatabaseBackend, all_counts, check_staged, connect_error, connection_settings, count_resources,
    expected_files)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._container import database_network
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import file_md5
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import Swap

PSYCOPG2_ERROR = None
try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError:
    psycopg2 = None
    PSYCOPG2_ERROR = traceback.format_exc()

MAINTENANCE_DB = 'postgres'
SECTION = 'PostgreSQL'
# Attachments a server-side cursor hands over per round trip.
ROWS_PER_FETCH = 4096
DUMP = 'orthanc.dump'


FIELDS = {'host': 'Host', 'port': 'Port', 'database': 'Database', 'user': 'Username', 'password': 'Password'}


def settings_for(section, params):
    """libpq keywords: the plugin section (or its ConnectionUri), then the login_* options."""
    defaults = {'host': 'localhost', 'port': 5432, 'database': 'orthanc', 'user': 'orthanc'}
    if section.get('ConnectionUri'):
        parsed = psycopg2.extensions.parse_dsn(section['ConnectionUri'])
        defaults.update(parsed)
        defaults['database'] = defaults.pop('dbname', defaults['database'])
        section = {}
    settings = connection_settings(defaults, section, FIELDS, params)
    if params.get('login_unix_socket'):
        settings['host'] = settings.pop('unix_socket')
    settings['dbname'] = settings.pop('database')
    return settings


def read_counts(cursor):
    return count_resources(cursor, 'SELECT resourcetype, COUNT(*) FROM resources GROUP BY resourcetype')


class DatabaseSwap(Swap):
    """Put a staged database in place of Orthanc's by renames; the previous one is kept."""

    def __init__(self, backend, staging, previous):
        self.backend, self.staging, self.previous = backend, staging, previous
        self.kept_at = 'database %s' % previous
        # 1: the live database is renamed aside; 2: and the staged one is in place; 3: the staged one is in
        # place where there was no live database
        self.renamed = 0

    def _rename(self, old, new):
        return sql.SQL('ALTER DATABASE {} RENAME TO {}').format(sql.Identifier(old), sql.Identifier(new))

    def _exists(self, name):
        connection = self.backend.connect(MAINTENANCE_DB, autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,))
                return cursor.fetchone() is not None
        finally:
            connection.close()

    def apply(self):
        live = self.backend.database
        if self._exists(live):    # a restore onto a new server or name may have no database yet
            self.backend.maintenance([self._rename(live, self.previous)])
            self.renamed = 1
        self.backend.maintenance([self._rename(self.staging, live)])
        self.renamed = 2 if self.renamed else 3

    def undo(self):
        live = self.backend.database
        if self.renamed in (2, 3):
            self.backend.maintenance([self._rename(live, self.staging)])
        if self.renamed in (1, 2):
            self.backend.maintenance([self._rename(self.previous, live)])
        self.renamed = 0
        self.cleanup()

    def discard(self):
        self.backend.maintenance([sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(self.previous))])

    def cleanup(self):
        if self.renamed == 0:
            self.backend.maintenance([sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(self.staging))])


class PostgreSQLBackend(DatabaseBackend):
    """A PostgreSQL index (and storage, with EnableStorage): hot dumps with pg_dump from one snapshot,
    restored into a staging database that is then renamed into place."""

    name = 'postgresql'
    driver_error = psycopg2.Error if psycopg2 else Exception
    modes = ('hot', 'cold')
    folder = 'db'
    plugin_marker = 'OrthancPostgreSQL'
    section_name = SECTION
    swap_class = DatabaseSwap
    current_schema = 'current_schema()'

    @staticmethod
    def missing(module):
        """What this host lacks to back up and restore this backend."""
        lacking = [] if psycopg2 else ['Python module psycopg2']
        return lacking + ['command %s' % name for name in ('pg_dump', 'pg_restore') if not module.get_bin_path(name)]

    def __init__(self, module, config):
        if psycopg2 is None:
            raise OrthancOpsError(missing_required_lib('psycopg2 (Debian: python3-psycopg2)'), exception=PSYCOPG2_ERROR)
        self.module = module
        self.section = config.get(SECTION) or {}
        self.settings = settings_for(self.section, module.params)
        self.database = self.settings['dbname']
        self.jobs = module.params.get('dump_jobs') or 1
        self.network, self.network_words = database_network(module)

    def _where(self):
        return 'PostgreSQL database "%s" at %s:%s%s as "%s"' % (
            self.database, self.settings['host'], self.settings['port'], self.network_words, self.settings['user'])

    def connect(self, database=None, autocommit=False):
        try:
            with self.network():
                connection = psycopg2.connect(**dict(self.settings, dbname=database or self.database))
        except psycopg2.Error as exc:
            raise connect_error(self._where(), 'PostgreSQL', str(exc).strip())
        connection.autocommit = autocommit
        return connection

    @staticmethod
    def server_cursor(connection):
        """A named cursor, whose rows stay on the server until read (inside the connection's transaction)."""
        cursor = connection.cursor(name='orthanc_ops_rows')
        cursor.itersize = ROWS_PER_FETCH
        return cursor

    def _tool(self, name, args):
        """Run a PostgreSQL client tool with the connection in the environment, the password never on argv."""
        binary = self.module.get_bin_path(name)
        if not binary:
            raise OrthancOpsError('%s is not installed on this host; install postgresql-client.' % name)
        environ = {'PGHOST': str(self.settings['host']), 'PGPORT': str(self.settings['port']),
                   'PGUSER': self.settings['user']}
        if self.settings.get('password'):
            environ['PGPASSWORD'] = self.settings['password']
        with self.network():
            rc, out, err = self.module.run_command([binary] + args, environ_update=environ)
        if rc != 0:
            raise OrthancOpsError('%s failed for the %s (exit code %d): %s' % (name, self._where(), rc, err.strip()))

    def estimate_bytes(self):
        return self._select('SELECT pg_database_size(current_database())')[0][0]

    def capture(self, backup_folder, hold):
        """pg_dump in a snapshot whose attachments were held while nobody could delete or add one.

        Transaction A locks attachedfiles (writers wait), exports its snapshot, reads the
        attachments and lets ``hold`` take their files; transaction B imports that snapshot
        and exports it again, so A can end (writers resume) while pg_dump runs in B's snapshot.
        """
        target = os.path.join(backup_folder, self.folder)
        os.mkdir(target, 0o700)
        dump = os.path.join(target, DUMP)
        holder, dumper = self.connect(), self.connect()
        try:
            holder.set_session(isolation_level='REPEATABLE READ')
            dumper.set_session(isolation_level='REPEATABLE READ', readonly=True)
            with holder.cursor() as cursor, dumper.cursor() as dump_cursor:
                cursor.execute("SET LOCAL lock_timeout = '60s'")
                cursor.execute('LOCK TABLE attachedfiles IN SHARE MODE')
                cursor.execute('SELECT pg_export_snapshot()')
                dump_cursor.execute('SET TRANSACTION SNAPSHOT %s', (cursor.fetchone()[0],))
                dump_cursor.execute('SELECT pg_export_snapshot()')
                snapshot = dump_cursor.fetchone()[0]
                counts = all_counts(read_counts(cursor))
                with self.server_cursor(holder) as rows:
                    rows.execute('SELECT uuid, compressedsize, compressiontype, uncompressedhash, compressedhash '
                                 'FROM attachedfiles')
                    held = hold(expected_files(rows))
                holder.commit()
                layout = ['-Fd', '-j', str(self.jobs)] if self.jobs > 1 else ['-Fc']
                self._tool('pg_dump', layout + ['--snapshot=' + snapshot, '-f', dump, '-d', self.database])
        except psycopg2.Error as exc:
            raise OrthancOpsError('Reading the %s failed: %s' % (self._where(), str(exc).strip()))
        finally:
            for connection in (holder, dumper):
                connection.rollback()
                connection.close()
        files = {}
        for folder, dummy, names in os.walk(target):
            for name in names:
                path = os.path.join(folder, name)
                os.chmod(path, 0o600)
                files[os.path.relpath(path, backup_folder)] = {'size': os.path.getsize(path), 'md5': file_md5(path)}
        return files, counts, held

    def _load(self, backup_folder, database, manifest, cleanup):
        """pg_restore the dump into the new database ``database`` and check it holds the manifest's counts;
        ``cleanup()`` on failure."""
        self.maintenance([sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(database)),
                          sql.SQL('CREATE DATABASE {}').format(sql.Identifier(database))])
        try:
            self._tool('pg_restore', ['--no-owner', '--no-privileges', '--no-comments', '--exit-on-error',
                                      '-j', str(self.jobs), '-d', database, os.path.join(backup_folder, self.folder, DUMP)])
            connection = self.connect(database)
            try:
                with connection.cursor() as cursor:
                    check_staged(manifest['counts'], read_counts(cursor), database)
            finally:
                connection.close()
        except (OrthancOpsError, psycopg2.Error):
            cleanup()
            raise

    def drop_sandbox(self, name):
        """Drop the database of the sandbox ``name``, ending its connections first (a throwaway Orthanc
        killed an instant ago may still have one)."""
        database = self._sandbox_database(name)
        self.maintenance([sql.SQL('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} '
                                  'AND pid <> pg_backend_pid()').format(sql.Literal(database)),
                          sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(database))])

    def maintenance(self, statements):
        """Run ``statements`` on the maintenance database, outside any transaction."""
        connection = self.connect(MAINTENANCE_DB, autocommit=True)
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        except psycopg2.Error as exc:
            raise OrthancOpsError('PostgreSQL refused %s: %s' % (statement.as_string(connection), str(exc).strip()))
        finally:
            connection.close()
