# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Database backends of Orthanc: which one a configuration uses, and the class that handles it.

Every backend class offers the same interface (see ``sqlite.SQLiteBackend``); the phases
get theirs from ``for_config`` and never look at backend names themselves.
"""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends.sqlite import SQLiteBackend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

BACKENDS = (SQLiteBackend,)

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


def for_config(config):
    """An instance of the backend class for the configuration's index, or a clear error."""
    name, dummy = index_backend(config)
    for backend in BACKENDS:
        if backend.name == name:
            return backend(config)
    raise OrthancOpsError('This configuration keeps the Orthanc index in %s, which this version of the '
                          'collection cannot back up or restore (it handles: %s).'
                          % (name, ', '.join(backend.name for backend in BACKENDS)))
