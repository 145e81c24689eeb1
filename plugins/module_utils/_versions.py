# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Whether an Orthanc can take a backup: its database schema and database plugins must not be older
than those that wrote the backup (an older plugin refuses, or misreads, a newer schema)."""

from __future__ import annotations

import re

# Plugins whose version decides the schema of the data they keep (index or storage in a database).
DATABASE_PLUGIN = re.compile(r'-(index|storage)$')


def version_key(version):
    """A comparable key for "1.10.1", "4.0", "mainline" (newest of all)."""
    if version == 'mainline':
        return (float('inf'),)
    numbers = re.findall(r'\d+', str(version or ''))
    return tuple(int(number) for number in numbers) or (0,)


def too_old(backup, live):
    """What the live Orthanc (``live``, as _rest's software()) lacks to restore ``backup`` (the same, from
    the manifest): a list of "what: live, backup" sentences, empty when it can take it."""
    problems = []
    wanted, have = backup.get('database_version'), live.get('database_version')
    if isinstance(wanted, int) and isinstance(have, int) and have < wanted:
        problems.append('database schema version %d, the backup has %d (written by Orthanc %s)'
                        % (have, wanted, backup.get('orthanc_version')))
    for name, version in sorted((backup.get('plugins') or {}).items()):
        current = (live.get('plugins') or {}).get(name)
        if DATABASE_PLUGIN.search(name) and current and version_key(current) < version_key(version):
            problems.append('plugin %s %s, the backup was written by %s' % (name, current, version))
    return problems


def differences(backup, live):
    """How the Orthanc ``live`` differs from the one that wrote ``backup`` (both as in too_old): its version and
    the versions of the database plugins the backup was written with; a list of "what: live, backup" sentences."""
    found = []
    wanted = backup.get('orthanc_version')
    if wanted and live.get('orthanc_version') != wanted:
        found.append('Orthanc %s, the backup was written by Orthanc %s' % (live.get('orthanc_version'), wanted))
    have = live.get('plugins') or {}
    for name, version in sorted((backup.get('plugins') or {}).items()):
        if DATABASE_PLUGIN.search(name) and have.get(name) != version:
            found.append('plugin %s %s, the backup was written by %s' % (name, have.get(name) or 'missing', version))
    return found
