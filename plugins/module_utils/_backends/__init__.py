# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Database backends of Orthanc: which one a configuration uses, and the class that handles it.

Every backend class offers the same interface; the phases get theirs from ``for_config``
and never look at backend names themselves:

- ``name``; ``modes``, the backup modes it supports, its default first; ``folder``, the
  sub-folder of a backup that holds its index or dump;
- ``missing(module)`` (static): what the host lacks to use it (Python drivers, client tools);
- ``estimate_bytes()``: about how much the index or dump adds to a backup;
- ``referenced(scratch, frozen, hold)``: calls ``hold`` with an iterator of (uuid, size, md5, resource,
  attachment name) of every attachment the index references, read directly as it is consumed (SQLite
  from a copy in the folder ``scratch`` taken inside ``frozen()``, the databases with one read-only
  query), and returns what ``hold`` returns;
- ``prepare(backup_folder)``: what can be taken ahead while Orthanc serves, before ``capture``;
- ``capture(backup_folder, hold)`` -> (files, counts, held): copy or dump the index into
  ``<backup_folder>/<folder>`` (its files' MD5s may be None, for the phase to compute once Orthanc
  runs again), read from that very copy or snapshot the resource counts, then the attachments, and
  call ``hold(expected)`` with an iterator of (uuid, size, md5 or None) of each file, read as it is
  consumed (never all at once), at a moment when Orthanc can neither delete nor add one; ``held`` is
  what ``hold`` returns; a backend whose ``modes`` include ``freeze`` also takes
  ``quiesced``, a context it holds only while it copies the index (``hold`` then runs after it);
- ``stage(backup_folder, stamp, manifest)`` -> a swap (``apply``, ``undo``, ``discard``,
  ``cleanup``, ``kept_at``): prepare the restore of the index while Orthanc runs from the files
  the (checked) manifest lists, and nothing else (a restored dump must hold its ``counts``); ``apply`` puts it in place while Orthanc is stopped, ``undo``
  puts the previous index back;
- ``plugin_marker``: what the names of its plugin's libraries hold (None for Orthanc's own SQLite);
  ``sandbox(backup_folder, name, manifest, folder)`` -> the configuration entries of a throwaway Orthanc
  on a copy of the backup's index (a SQLite copy in ``folder``, or the dump restored into a database of
  the same server named after ``name``); ``drop_sandbox(name)`` removes what ``sandbox`` made outside
  ``folder`` (it may be called for a sandbox that a killed module left, or never made).
"""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.mysql import MySQLBackend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.postgresql import PostgreSQLBackend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.sqlite import SQLiteBackend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

BACKENDS = (SQLiteBackend, PostgreSQLBackend, MySQLBackend)

# Plugin configuration sections Orthanc's official database plugins read.
PLUGIN_SECTIONS = {'PostgreSQL': 'postgresql', 'MySQL': 'mysql'}


def _plugin_name(config, option, default):
    sections = config.sections_enabling(option)
    if len(sections) > 1:
        raise OrthancOpsError('The configuration sets %s in several plugin sections (%s); Orthanc can use only '
                              'one. Keep one.' % (option, ', '.join(sections)))
    if not sections:
        return default, None
    return PLUGIN_SECTIONS.get(sections[0], 'plugin'), sections[0]


def index_backend(config):
    """('sqlite' | 'postgresql' | 'mysql' | 'plugin', plugin section or None)."""
    return _plugin_name(config, 'EnableIndex', SQLiteBackend.name)


def storage_backend(config):
    """('filesystem' | 'postgresql' | 'mysql' | 'plugin', plugin section or None)."""
    return _plugin_name(config, 'EnableStorage', 'filesystem')


def files_on_disk(config):
    """True when the DICOM files are in the storage folder rather than in a database."""
    return not config.sections_enabling('EnableStorage')


def missing_requirements(module, config):
    """What this host lacks for the configuration's index backend (empty for an unknown one)."""
    name, dummy = index_backend(config)
    return next((backend.missing(module) for backend in BACKENDS if backend.name == name), [])


def for_config(module, config):
    """An instance of the backend class for the configuration's index, or a clear error."""
    return named(module, config, index_backend(config)[0])


def named(module, config, name):
    """An instance of the backend class ``name`` (a manifest's ``index_backend``) with the connection settings
    of ``config`` and the module's login_* options, or a clear error."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend(module, config)
    raise OrthancOpsError('The Orthanc index is in %s, which this version of the collection cannot back up or '
                          'restore (it handles: %s).' % (name, ', '.join(backend.name for backend in BACKENDS)))
