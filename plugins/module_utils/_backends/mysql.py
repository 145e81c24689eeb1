# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The orthanc-mysql plugin (MySQL or MariaDB): dumps with mariadb-dump/mysqldump --single-transaction
while the attachment tables are read-locked, restores into a staging database swapped in by
RENAME TABLE."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends._common import (
    DatabaseBackend, all_counts, check_staged, connect_error, connection_settings, count_resources,
    expected_files)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._container import database_network
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import file_md5, open_regular
from ansible_collections.orthanc_ops.backup.plugins.module_utils._swap import Swap

PYMYSQL_ERROR = None
try:
    import pymysql
    import pymysql.cursors
except ImportError:
    pymysql = None
    PYMYSQL_ERROR = traceback.format_exc()

DUMP = 'orthanc.sql'
SECTION = 'MySQL'


FIELDS = {'host': 'Host', 'port': 'Port', 'database': 'Database', 'user': 'Username', 'password': 'Password',
          'unix_socket': 'UnixSocket'}


def settings_for(section, params):
    """PyMySQL keywords: the plugin section, then the login_* options (a login_host means TCP)."""
    defaults = {'host': 'localhost', 'port': 3306, 'database': 'orthanc', 'user': 'orthanc', 'password': '',
                'unix_socket': None}
    settings = connection_settings(defaults, section, FIELDS, params)
    if params.get('login_host') and not params.get('login_unix_socket'):
        settings['unix_socket'] = None
    return settings


def check_complete(dump):
    """mariadb-dump and mysqldump end a complete dump with a "Dump completed" comment."""
    with open(dump, 'rb') as handle:
        handle.seek(max(0, os.path.getsize(dump) - 200))
        if b'Dump completed' not in handle.read():
            raise OrthancOpsError('The dump %s is incomplete (it does not end with "Dump completed"); use another '
                                  'backup.' % dump)


def read_counts(cursor):
    return count_resources(cursor, 'SELECT resourceType, COUNT(*) FROM Resources GROUP BY resourceType')


# Client tools, MariaDB's names first: either one does.
DUMP_COMMANDS = ('mariadb-dump', 'mysqldump')
CLIENT_COMMANDS = ('mariadb', 'mysql')


def quoted(name):
    return '`%s`' % name.replace('`', '``')


def literal(text):
    return "'%s'" % text.replace('\\', '\\\\').replace("'", "''")


class TableSwap(Swap):
    """MySQL cannot rename a database: move every table between databases with one RENAME TABLE.

    Tables with triggers cannot change database, so triggers are read, dropped, and created
    again where their tables went. Routines the staged database has and the live one lacks
    are created in the live one.
    """

    def __init__(self, backend, staging, previous):
        self.backend, self.staging, self.previous = backend, staging, previous
        self.kept_at = 'database %s' % previous
        self.live_triggers = None
        self.swapped = False

    def _tables(self, database):
        return [row[0] for row in self.backend.execute(
            ["SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'"
             % literal(database)])]

    def _take_triggers(self, database):
        """Drop the triggers of ``database`` and return their definitions."""
        names = [row[0] for row in self.backend.execute(['SHOW TRIGGERS FROM %s' % quoted(database)])]
        definitions = [self.backend.execute(['SHOW CREATE TRIGGER %s.%s' % (quoted(database), quoted(name))])[0][2]
                       for name in names]
        self.backend.execute(['DROP TRIGGER %s.%s' % (quoted(database), quoted(name)) for name in names])
        return definitions

    def _move(self, moves):
        """moves: (from database, to database) pairs; one atomic RENAME TABLE for all their tables."""
        pairs = ['%s.%s TO %s.%s' % (quoted(source), quoted(table), quoted(target), quoted(table))
                 for source, target in moves for table in self._tables(source)]
        if pairs:
            self.backend.execute(['RENAME TABLE ' + ', '.join(pairs)])

    def apply(self):
        """Rename the live tables into the previous database and the staged ones into the live database, with
        their triggers and the routines the live database lacks."""
        live = self.backend.database
        # A restore onto a new server or name may have no database yet.
        self.backend.execute(['CREATE DATABASE IF NOT EXISTS %s' % quoted(live),
                              'CREATE DATABASE IF NOT EXISTS %s' % quoted(self.previous)])
        self.live_triggers = self._take_triggers(live)
        staged_triggers = self._take_triggers(self.staging)
        self._move([(live, self.previous), (self.staging, live)])
        self.swapped = True
        self.backend.execute(self.live_triggers, database=self.previous)
        self.backend.execute(staged_triggers, database=live)
        existing = set(row[1] for row in self.backend.execute(['SHOW PROCEDURE STATUS WHERE Db = %s' % literal(live)]))
        for row in self.backend.execute(['SHOW PROCEDURE STATUS WHERE Db = %s' % literal(self.staging)]):
            if row[1] not in existing:
                create = self.backend.execute(['SHOW CREATE PROCEDURE %s.%s' % (quoted(self.staging), quoted(row[1]))])[0][2]
                self.backend.execute([create], database=live)

    def undo(self):
        live = self.backend.database
        if self.swapped:
            self._take_triggers(live)
            self._take_triggers(self.previous)
            self._move([(live, self.staging), (self.previous, live)])
            self.swapped = False
        if self.live_triggers:
            self.backend.execute(self.live_triggers, database=live)
            self.live_triggers = None
        self.discard()
        self.cleanup()

    def discard(self):
        self.backend.execute(['DROP DATABASE IF EXISTS %s' % quoted(self.previous)])

    def cleanup(self):
        """Drop the staging database (empty once swapped in: its tables moved, its routines copied)."""
        self.backend.execute(['DROP DATABASE IF EXISTS %s' % quoted(self.staging)])


class MySQLBackend(DatabaseBackend):
    """A MySQL or MariaDB index (and storage, with EnableStorage): hot dumps with mariadb-dump in one
    transaction, restored into a staging database whose tables are then renamed into place."""

    name = 'mysql'
    driver_error = pymysql.MySQLError if pymysql else Exception
    modes = ('hot', 'cold')
    folder = 'db'
    plugin_marker = 'OrthancMySQL'
    section_name = SECTION
    swap_class = TableSwap
    current_schema = 'DATABASE()'

    @staticmethod
    def missing(module):
        """What this host lacks to back up and restore this backend."""
        lacking = [] if pymysql else ['Python module pymysql']
        return lacking + ['command %s' % ' or '.join(names) for names in (DUMP_COMMANDS, CLIENT_COMMANDS)
                          if not any(module.get_bin_path(name) for name in names)]

    def __init__(self, module, config):
        if pymysql is None:
            raise OrthancOpsError(missing_required_lib('PyMySQL (Debian: python3-pymysql)'), exception=PYMYSQL_ERROR)
        self.module = module
        self.section = config.get(SECTION) or {}
        self.settings = settings_for(self.section, module.params)
        self.database = self.settings['database']
        self.network, self.network_words = database_network(module)

    def _where(self):
        place = self.settings['unix_socket'] or '%s:%s' % (self.settings['host'], self.settings['port'])
        return 'MySQL database "%s" at %s%s as "%s"' % (self.database, place, self.network_words,
                                                        self.settings['user'])

    def connect(self, database=None):
        try:
            with self.network():
                return pymysql.connect(host=self.settings['host'], port=self.settings['port'],
                                       unix_socket=self.settings['unix_socket'], user=self.settings['user'],
                                       password=self.settings['password'], database=database or self.database,
                                       autocommit=True)
        except pymysql.MySQLError as exc:
            raise connect_error(self._where(), 'MySQL', exc)

    @staticmethod
    def server_cursor(connection):
        """An unbuffered cursor, whose rows stay on the server until read."""
        return connection.cursor(pymysql.cursors.SSCursor)

    def _client(self, names, args, stdin=None):
        """Run a client tool with a 0600 option file, so that the password is never on argv; ``stdin``: an open
        file descriptor the tool reads as its standard input."""
        binary = next((path for path in (self.module.get_bin_path(name) for name in names) if path), None)
        if not binary:
            raise OrthancOpsError('%s is not installed on this host; install mariadb-client.' % ' or '.join(names))
        for name in ('user', 'password', 'unix_socket'):
            # An option file is read a line at a time: a line break in a value would add options of its own.
            if any(char in (self.settings[name] or '') for char in '\r\n\0'):
                raise OrthancOpsError('The MySQL %s of the %s holds a line break or NUL, which an option file cannot '
                                      'carry; fix it in Orthanc\'s configuration or the login options.'
                                      % (name, self._where()))
        folder = tempfile.mkdtemp(prefix='orthanc-ops-')
        try:
            options = os.path.join(folder, 'client.cnf')
            fd = os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as handle:
                handle.write('[client]\nuser=%s\npassword="%s"\n' % (
                    self.settings['user'], self.settings['password'].replace('\\', '\\\\').replace('"', '\\"')))
                if self.settings['unix_socket']:
                    handle.write('socket=%s\n' % self.settings['unix_socket'])
                else:
                    handle.write('host=%s\nport=%d\nprotocol=tcp\n' % (self.settings['host'], self.settings['port']))
            argv = [binary, '--defaults-extra-file=' + options] + args
            with self.network():
                if stdin is None:
                    rc, out, err = self.module.run_command(argv)
                else:
                    # run_command gives no file as standard input but through a shell: every word quoted.
                    rc, out, err = self.module.run_command(' '.join(shlex.quote(arg) for arg in argv) + ' <&%d' % stdin,
                                                           use_unsafe_shell=True, pass_fds=[stdin])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if rc != 0:
            if "unknown option '--sandbox'" in err:
                raise OrthancOpsError('%s cannot load a dump safely: it has no --sandbox option (%s). A dump read '
                                      'without it could run shell commands; install a client from MariaDB 10.5.25, '
                                      '10.6.18, 10.11.8, 11.0.6 or later.'
                                      % (binary, self.module.run_command([binary, '--version'])[1].strip()))
            raise OrthancOpsError('%s failed for the %s (exit code %d): %s'
                                  % (os.path.basename(binary), self._where(), rc, err.strip()))
        return out

    def estimate_bytes(self):
        return int(self._select('SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables '
                                'WHERE table_schema = %s', (self.database,))[0][0])

    def capture(self, backup_folder, hold):
        """Read the attachments and take their files with the attachment tables read-locked, and dump
        while the lock still stands: the dump's snapshot then holds exactly those attachments.
        Orthanc keeps answering; its writes wait until the dump has started."""
        target = os.path.join(backup_folder, self.folder)
        os.mkdir(target, 0o700)
        dump = os.path.join(target, DUMP)
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute('LOCK TABLES AttachedFiles READ, Resources READ')
                counts = all_counts(read_counts(cursor))
                with self.server_cursor(connection) as rows:
                    rows.execute('SELECT uuid, compressedSize, compressionType, uncompressedHash, compressedHash '
                                 'FROM AttachedFiles')
                    held = hold(expected_files(rows))
                self._client(DUMP_COMMANDS, [
                    '--single-transaction', '--hex-blob', '--no-tablespaces', '--routines', '--triggers',
                    '--result-file=' + dump, self.database])
                cursor.execute('UNLOCK TABLES')
        except pymysql.MySQLError as exc:
            raise OrthancOpsError('Reading the %s failed: %s' % (self._where(), exc))
        finally:
            connection.close()
        os.chmod(dump, 0o600)
        check_complete(dump)
        files = {'%s/%s' % (self.folder, DUMP): {'size': os.path.getsize(dump), 'md5': file_md5(dump)}}
        return files, counts, held

    def _load(self, backup_folder, database, manifest, cleanup):
        """Load the dump into the new database ``database`` and check it holds the manifest's counts;
        ``cleanup()`` on failure."""
        dump = os.path.join(backup_folder, self.folder, DUMP)
        check_complete(dump)
        self.execute(['DROP DATABASE IF EXISTS %s' % quoted(database), 'CREATE DATABASE %s' % quoted(database)])
        try:
            # --sandbox: a dump is data; the client's commands that reach the host (\! and system, source,
            # tee, ...) refuse, whoever rewrote the dump. It is read through no link.
            with open_regular(os.path.join(self.folder, DUMP), beneath=backup_folder) as handle:
                self._client(CLIENT_COMMANDS, ['--sandbox', '--database=' + database], stdin=handle.fileno())
            connection = self.connect(database)
            try:
                with connection.cursor() as cursor:
                    check_staged(manifest['counts'], read_counts(cursor), database)
            finally:
                connection.close()
        except (OrthancOpsError, pymysql.MySQLError):
            cleanup()
            raise

    def drop_sandbox(self, name):
        """Drop the database of the sandbox ``name``."""
        self.execute(['DROP DATABASE IF EXISTS %s' % quoted(self._sandbox_database(name))])

    def execute(self, statements, database=None):
        """Run ``statements`` in order; the rows of the last one."""
        rows = ()
        if not statements:
            return rows
        connection = self.connect(database or 'information_schema')
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    rows = cursor.fetchall()
        except pymysql.MySQLError as exc:
            raise OrthancOpsError('MySQL refused "%s": %s' % (statement.split('\n')[0][:200], exc))
        finally:
            connection.close()
        return rows
