# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manifest of a backup: what it holds, with sizes and MD5s, and how it was made."""

from __future__ import annotations

import json
import os
import re
import stat

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    FILE_MODE, UnsafePath, create_file, open_regular, safe_parts, tree_md5s, walk_tree)

FORMAT_VERSION = 1
COLLECTION_VERSION = '0.1.0'
NAME = 'manifest.json'
# The folders of a backup: the configuration, a SQLite index, a database dump, the storage snapshot.
AREAS = ('config', 'index', 'db', 'storage')
_STORAGE_KEY = re.compile(r'^storage/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f-]*$')
_MD5 = re.compile(r'^[0-9a-f]{32}$')


def write(folder, manifest):
    """Write ``manifest.json`` in ``folder`` and fsync it."""
    path = os.path.join(folder, NAME)
    with create_file(path, FILE_MODE) as handle:
        handle.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _invalid(folder, why):
    return OrthancOpsError('The manifest of %s is not valid: %s. The backup is damaged or was altered; do not use it, '
                           'choose another backup.' % (folder, why))


def read(folder):
    """The manifest of a complete backup, checked to be well formed: every file it lists is a plain
    path inside the backup, in one of the backup's areas, with an integer size and an MD5."""
    path = os.path.join(folder, NAME)
    try:
        with open_regular(NAME, beneath=folder) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise OrthancOpsError('%s has no %s: it is not a complete backup. Choose another backup.' % (folder, NAME))
    except (OSError, ValueError) as exc:
        raise OrthancOpsError('Cannot read %s: %s. The backup is damaged; choose another backup.' % (path, exc))
    if not isinstance(manifest, dict):
        raise _invalid(folder, 'it does not hold a JSON object')
    if manifest.get('status') != 'complete' or manifest.get('format') != FORMAT_VERSION:
        raise OrthancOpsError('%s is not a complete backup of format %d (status %r, format %r).'
                              % (folder, FORMAT_VERSION, manifest.get('status'), manifest.get('format')))
    files = manifest.get('files')
    if not isinstance(files, dict):
        raise _invalid(folder, 'it has no "files" list')
    for key, entry in files.items():
        if not valid_key(key):
            raise _invalid(folder, '%r is not a path inside the backup (%s/...)' % (key, '/..., '.join(AREAS)))
        if not (isinstance(entry, dict) and isinstance(entry.get('size'), int) and entry['size'] >= 0
                and isinstance(entry.get('md5'), str) and _MD5.match(entry['md5'])):
            raise _invalid(folder, 'the entry of %s has no valid size and MD5' % key)
    if not isinstance(manifest.get('counts'), dict) or not isinstance(manifest.get('backup_id'), str):
        raise _invalid(folder, 'it has no counts or backup id')
    return manifest


def valid_key(key):
    """True for a path a backup may hold: storage/xx/yy/<uuid>, or a plain relative path in another area."""
    if not isinstance(key, str):
        return False
    try:
        parts = safe_parts(key)
    except UnsafePath:
        return False
    if parts[0] == 'storage':
        return bool(_STORAGE_KEY.match(key))
    return parts[0] in AREAS and len(parts) > 1


def problems(folder, manifest, check_md5=True, hashed_later=()):
    """What makes ``folder`` differ from its manifest: files missing, of another size or (with check_md5)
    of another MD5, and anything the manifest does not list (files, symbolic links, devices). The files
    under the prefixes ``hashed_later`` are not hashed here: their caller checks each copy it makes."""
    listed = manifest['files']
    found, present, to_hash = [], set(), []
    for relative, info in sorted(walk_tree(folder)):
        if relative == NAME:
            continue
        if stat.S_ISLNK(info.st_mode):
            found.append('%s is a symbolic link' % relative)
        elif not stat.S_ISREG(info.st_mode):
            found.append('%s is not a regular file' % relative)
        elif relative not in listed:
            found.append('%s is not listed in the manifest' % relative)
        else:
            present.add(relative)
            if info.st_size != listed[relative]['size']:
                found.append('%s has %d bytes, expected %d' % (relative, info.st_size, listed[relative]['size']))
            elif check_md5 and not relative.startswith(hashed_later):
                to_hash.append(relative)
    for relative, md5 in zip(to_hash, tree_md5s(folder, to_hash)):
        if md5 is None:
            found.append('%s cannot be read as a regular file' % relative)
        elif md5 != listed[relative]['md5']:
            found.append('%s has MD5 %s, expected %s' % (relative, md5, listed[relative]['md5']))
    found.extend('%s is missing' % relative for relative in sorted(listed) if relative not in present)
    return found


def storage_files(manifest):
    """{uuid: {'size', 'md5'}} of the storage files a manifest lists."""
    return dict((relative.rsplit('/', 1)[1], value) for relative, value in manifest['files'].items()
                if relative.startswith('storage/'))


def area_md5s(manifest, area):
    """{path relative to the area's folder: MD5} of the files the manifest lists in ``area`` (index, config ...)."""
    prefix = area + '/'
    return dict((relative[len(prefix):], entry['md5']) for relative, entry in manifest['files'].items()
                if relative.startswith(prefix))


def area_files(manifest, area):
    """Paths, relative to the area's folder, of the files the manifest lists in ``area``, sorted."""
    return sorted(area_md5s(manifest, area))
