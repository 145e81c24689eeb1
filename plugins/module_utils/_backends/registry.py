# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which database backend of Orthanc a configuration uses, and the class that handles it.

Every backend class is a ``_common.Backend``; the phases get theirs from ``for_config`` (or ``named``, for the
backend a manifest names) and never look at backend names themselves.
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
