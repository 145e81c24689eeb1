# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The interface every backend offers, and the pieces the backends share: attachment and count bookkeeping,
connection settings."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

# The database plugins' numbering of resource types (OrthancPluginResourceType); the SQLite core
# numbers them from 1.
PLUGIN_RESOURCE_TYPES = {0: 'patients', 1: 'studies', 2: 'series', 3: 'instances'}
RESOURCE_LABELS = ('patients', 'studies', 'series', 'instances')
COMPRESSION_ZLIB = 2
LOGIN_OPTIONS = ('login_host', 'login_port', 'login_user', 'login_password', 'login_db', 'login_unix_socket')
LOGIN_KEYS = {'login_db': 'database'}


def connect_error(where, section, error):
    return OrthancOpsError('Cannot connect to the %s: %s. Check the %s section of the configuration or the login_* '
                           'options; for a database in a container whose address or name this host cannot reach, '
                           'set database_container to that container\'s name.' % (where, error, section))


# Orthanc's names of its own attachment types (FileContentType); user types are named by number here.
ATTACHMENT_NAMES = {1: 'dicom', 2: 'dicom-as-json', 3: 'dicom-until-pixel-data'}


def expected_md5(compression, uncompressed_md5, compressed_md5):
    """The MD5 the file on disk must have: with zlib compression, the compressed one."""
    return (compressed_md5 if compression == COMPRESSION_ZLIB else uncompressed_md5) or None


def expected_files(rows):
    """(uuid, size, md5 or None) of each file on disk, from AttachedFiles rows (uuid, size, compression,
    uncompressed MD5, compressed MD5), one at a time."""
    for uuid, size, compression, uncompressed_md5, compressed_md5 in rows:
        yield uuid, size, expected_md5(compression, uncompressed_md5, compressed_md5)


def all_counts(counts):
    """Per-type resource counts with every type present."""
    counts = dict(counts)
    for label in RESOURCE_LABELS:
        counts.setdefault(label, 0)
    return counts


def resource_files(rows, types=None):
    """(uuid, size, md5 or None, resource ('instances/<id>'), attachment name) of each file on disk, from rows
    of (uuid, size, compression, uncompressed MD5, compressed MD5, resource type, public id, file type), one
    at a time."""
    types = types or PLUGIN_RESOURCE_TYPES
    for uuid, size, compression, uncompressed_md5, compressed_md5, kind, public_id, file_type in rows:
        yield (uuid, size, expected_md5(compression, uncompressed_md5, compressed_md5),
               '%s/%s' % (types[kind], public_id), ATTACHMENT_NAMES.get(file_type, str(file_type)))


def count_resources(cursor, query, types=None):
    """{label: count} from a ``SELECT resourceType, COUNT(*) ... GROUP BY resourceType``."""
    types = types or PLUGIN_RESOURCE_TYPES
    cursor.execute(query)
    return dict((types[kind], count) for kind, count in cursor.fetchall() if kind in types)


class Backend(ABC):
    """One index backend of Orthanc, as the phases drive it; they get theirs from ``registry.for_config`` and never
    look at backend names themselves.

    A subclass sets ``name`` (a manifest's ``index_backend``), ``modes`` (the backup modes it supports, its
    default first), ``folder`` (the sub-folder of a backup that holds its index or dump) and ``plugin_marker``
    (what the names of its plugin's libraries hold, None for Orthanc's own SQLite), and is built with
    ``(module, config)``. ``capture_takes_quiesced`` says that its ``capture`` takes ``quiesced``.
    """

    name = None
    modes = ()
    capture_takes_quiesced = False
    folder = None
    plugin_marker = None
    # The network connections to the index start from (a database container's, see _container.database_network);
    # a throwaway Orthanc on a backup runs there too.
    network = staticmethod(contextlib.nullcontext)

    @staticmethod
    @abstractmethod
    def missing(module):
        """What the host lacks to use this backend (Python drivers, client tools): a list of names."""

    @abstractmethod
    def estimate_bytes(self):
        """About how much the index or dump adds to a backup, asked before Orthanc is stopped."""

    @abstractmethod
    def prepare(self, backup_folder):
        """What can be taken ahead while Orthanc serves, before ``capture``."""

    @abstractmethod
    def capture(self, backup_folder, hold):
        """Copy or dump the index into ``<backup_folder>/<folder>``, and return (files, counts, held).

        ``files`` are the copy's files ({path: {size, md5}}; an MD5 may be None, for the phase to compute once
        Orthanc runs again), ``counts`` the resource counts read from that very copy or snapshot. ``hold`` is
        called with an iterator of (uuid, size, md5 or None) of each attachment, read as it is consumed (never
        all at once), at a moment when Orthanc can neither delete nor add one; ``held`` is what it returns. A
        backend with ``capture_takes_quiesced`` (a must for ``freeze`` among its ``modes``) also takes
        ``quiesced``, a context it holds only while it copies the index (``hold`` then runs after it).
        """

    @abstractmethod
    def referenced(self, scratch, frozen, hold):
        """Call ``hold`` with an iterator of (uuid, size, md5, resource, attachment name) of every attachment the
        index references, read directly as it is consumed, and return what ``hold`` returns. A backend that
        cannot read a live index copies it into the folder ``scratch`` inside ``frozen()``."""

    @abstractmethod
    def stage(self, backup_folder, stamp, manifest):
        """While Orthanc runs: prepare the restore of the index from the files the (checked) manifest lists, and
        nothing else (a restored dump must hold the manifest's ``counts``); return its ``_swap.Swap``."""

    @abstractmethod
    def sandbox(self, backup_folder, name, manifest, folder):
        """The configuration entries of a throwaway Orthanc on a copy of the backup's index: a copy in
        ``folder``, or the dump restored into a database of the same server named after ``name``."""

    @abstractmethod
    def drop_sandbox(self, name):
        """Remove what ``sandbox`` made outside its folder; called also for a sandbox that a killed module left,
        or never made."""

    @abstractmethod
    def labels(self, backup_folder, name):
        """The labels the backup holds (in ``backup_folder``, whose index files are checked, or in the database of
        its sandbox ``name``): [(resource level as REST names it, public id, label)]. Orthanc keeps them (1.12 and
        later) in the index only, so a recovery that sends DICOM files does not bring them back; [] for an index
        without labels."""


class DatabaseBackend(Backend):
    """What the database backends share: one-statement reads on a connection of their own.

    A subclass sets ``driver_error`` (its driver's base exception), ``section_name`` (its plugin's section of
    the configuration) and ``swap_class``, and offers ``connect()``, ``_where()``, ``server_cursor(connection)``
    (a cursor that reads its rows from the server as they are consumed), ``_load(backup_folder, database,
    manifest, cleanup)`` and ``drop_sandbox(name)``.
    """

    driver_error = Exception
    swap_class = None    # the _swap.Swap that puts a staged database in place

    def _select(self, query, parameters=()):
        """The rows of one SELECT, on a connection opened and closed for it."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, parameters or None)
                return cursor.fetchall()
        except self.driver_error as exc:
            raise OrthancOpsError('Reading the %s failed: %s' % (self._where(), str(exc).strip()))
        finally:
            connection.close()

    def prepare(self, backup_folder):
        """Nothing to take ahead: the dump is the capture."""

    def stage(self, backup_folder, stamp, manifest):
        """While Orthanc runs: load the dump into a staging database and check that it holds the manifest's counts;
        return the swap that puts it in place, keeping the live data as ``<database>_pre_<stamp>``."""
        swap = self.swap_class(self, '%s_restore_%s' % (self.database, stamp.lower()),
                               '%s_pre_%s' % (self.database, stamp.lower()))
        self._load(backup_folder, swap.staging, manifest, swap.cleanup)
        return swap

    def _sandbox_database(self, name):
        return '%s_sandbox_%s' % (self.database, name)

    # The SQL function naming the database (PostgreSQL: its schema) a connection uses.
    current_schema = None

    def labels(self, backup_folder, name):
        """The labels of the dump, read from the database of its sandbox (see Backend.labels)."""
        connection = self.connect(self._sandbox_database(name))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM information_schema.tables WHERE LOWER(table_name) = 'labels' "
                               'AND table_schema = %s' % self.current_schema)
                if not cursor.fetchone()[0]:
                    return []
                cursor.execute('SELECT r.resourceType, r.publicId, l.label FROM Labels l '
                               'JOIN Resources r ON r.internalId = l.id ORDER BY r.publicId, l.label')
                return [(PLUGIN_RESOURCE_TYPES[kind], public_id, label) for kind, public_id, label in cursor.fetchall()]
        except self.driver_error as exc:
            raise OrthancOpsError('Reading the labels of the backup from the %s failed: %s'
                                  % (self._where(), str(exc).strip()))
        finally:
            connection.close()

    def sandbox(self, backup_folder, name, manifest, folder):
        """The dump loaded into the database ``<db>_sandbox_<name>`` of the same server, and the plugin section
        that makes a throwaway Orthanc use it (without the live one's lock)."""
        database = self._sandbox_database(name)
        self._load(backup_folder, database, manifest, lambda: self.drop_sandbox(name))
        section = {'EnableIndex': True, 'EnableStorage': manifest.get('storage_backend') == self.name,
                   'Host': self.settings['host'], 'Port': self.settings['port'], 'Database': database,
                   'Username': self.settings['user'], 'Password': self.settings.get('password') or '', 'Lock': False}
        if self.settings.get('unix_socket'):
            section['UnixSocket'] = self.settings['unix_socket']
        return {self.section_name: section}

    def referenced(self, scratch, frozen, hold):
        """Every attachment the index references, with its resource (see resource_files), handed to ``hold``
        as it is read through a cursor of the server: one query while Orthanc runs."""
        connection = self.connect()
        try:
            with self.server_cursor(connection) as rows:
                rows.execute('SELECT a.uuid, a.compressedSize, a.compressionType, a.uncompressedHash, '
                             'a.compressedHash, r.resourceType, r.publicId, a.fileType FROM AttachedFiles a '
                             'JOIN Resources r ON r.internalId = a.id')
                return hold(resource_files(rows))
        except self.driver_error as exc:
            raise OrthancOpsError('Reading the %s failed: %s' % (self._where(), str(exc).strip()))
        finally:
            connection.close()


def check_staged(expected, staged, where):
    """A staged index must hold the resources the manifest counted."""
    differences = ['%s: %s, the manifest %s' % (label, staged.get(label, 0), expected.get(label))
                   for label in RESOURCE_LABELS if staged.get(label, 0) != expected.get(label)]
    if differences:
        raise OrthancOpsError('The dump restored into %s does not hold what the backup counted (%s): the dump is '
                              'damaged; use another backup.' % (where, '; '.join(differences)))


def connection_settings(defaults, section, fields, params):
    """Settings from the plugin ``section`` (``fields`` maps a setting to its key there), overridden
    by the module's login_* options (``login_host`` -> ``host`` ..., ``login_db`` -> the database);
    with a database container, the host is that container's loopback unless login_host says otherwise."""
    settings = dict(defaults)
    for key, option in fields.items():
        if section.get(option) not in (None, ''):
            settings[key] = section[option]
    if params.get('database_container'):
        # Reached inside the container's own network: its loopback, not the name or socket Orthanc uses.
        settings['host'] = '127.0.0.1'
        if 'unix_socket' in settings:
            settings['unix_socket'] = None
    for option in LOGIN_OPTIONS:
        if params.get(option) not in (None, ''):
            settings[LOGIN_KEYS.get(option, option[len('login_'):])] = params[option]
    settings['port'] = int(settings['port'])
    return settings
