# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read-only facts about an Orthanc server: its configuration, backends, paths and REST state."""

from __future__ import annotations

import re

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._context import Context
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import describe_deployment

MASK = '********'
DATABASE_KEYS = ('Host', 'Port', 'Database', 'Username', 'Password', 'ConnectionUri', 'UnixSocket',
                 'EnableIndex', 'EnableStorage', 'Lock', 'EnableSsl')
_PASSWORD_KEYWORD = re.compile(r"(password\s*=\s*)('(?:\\.|[^'\\])*'?|[^&\s]*)", re.IGNORECASE)


def masked_database(section):
    """The connection settings of a plugin section, passwords masked (also inside a URI)."""
    settings = dict((key, section[key]) for key in DATABASE_KEYS if key in section)
    if settings.get('Password'):
        settings['Password'] = MASK
    if settings.get('ConnectionUri'):
        settings['ConnectionUri'] = re.sub(r'(://[^:/@]+:)[^@]*@', r'\1' + MASK + '@', settings['ConnectionUri'])
        # A query parameter, or a libpq keyword whose value may be quoted and hold spaces and escaped quotes.
        settings['ConnectionUri'] = _PASSWORD_KEYWORD.sub(r'\1' + MASK, settings['ConnectionUri'])
    return settings


def gather(module):
    """The facts orthanc_info returns: configuration files, backends, paths, masked database settings, what the
    host lacks, and, when Orthanc answers, its version and statistics."""
    orthanc = Context(module)
    config, rest = orthanc.config, orthanc.rest
    index_backend, index_section = registry.index_backend(config)
    storage_backend, storage_section = registry.storage_backend(config)
    section = index_section or storage_section
    facts = {
        'changed': False,
        'deployment': describe_deployment(module, config),
        'config_files': config.files,
        'index_backend': index_backend,
        'storage_backend': storage_backend,
        'storage_dir': config.storage_dir,
        'index_dir': config.index_dir,
        'storage_compression': config.storage_compression,
        'unsupported_layout': config.unsupported_layout(),
        'http_port': config.http_port,
        'url': rest.url,
        'database': masked_database(config.get(section)) if section else None,
        'missing_requirements': registry.missing_requirements(module, config)
        + ([] if module.get_bin_path('rsync') else ['command rsync']),
        'running': False,
        'version': None,
        'statistics': None,
    }
    if rest.answers():
        facts['running'] = True
        try:
            system = rest.system()
            facts['version'] = system.get('Version')
            facts['statistics'] = rest.statistics()
        except OrthancOpsError as exc:
            facts['rest_error'] = str(exc)
    return facts


def main(module):
    exit_with(module, lambda: gather(module))
