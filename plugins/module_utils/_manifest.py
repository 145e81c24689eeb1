# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manifest of a backup: what it holds, with sizes and MD5s, and how it was made."""

from __future__ import annotations

import json
import os

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import FILE_MODE, file_md5

FORMAT_VERSION = 1
COLLECTION_VERSION = '0.1.0'
NAME = 'manifest.json'


def write(folder, manifest):
    """Write ``manifest.json`` in ``folder`` and fsync it."""
    path = os.path.join(folder, NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, 'w') as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read(folder):
    path = os.path.join(folder, NAME)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise OrthancOpsError('%s has no %s: it is not a complete backup. Choose another backup.' % (folder, NAME))
    except (OSError, ValueError) as exc:
        raise OrthancOpsError('Cannot read %s: %s. The backup is damaged; choose another backup.' % (path, exc))
    if manifest.get('status') != 'complete' or manifest.get('format') != FORMAT_VERSION:
        raise OrthancOpsError('%s is not a complete backup of format %d (status %r, format %r).'
                              % (folder, FORMAT_VERSION, manifest.get('status'), manifest.get('format')))
    return manifest


def problems(folder, manifest, check_md5=True):
    """Files of the manifest that are missing, of another size or (with check_md5) of another MD5."""
    found = []
    for relative, expected in sorted(manifest['files'].items()):
        path = os.path.join(folder, relative)
        try:
            size = os.stat(path).st_size
        except OSError:
            found.append('%s is missing' % relative)
            continue
        if size != expected['size']:
            found.append('%s has %d bytes, expected %d' % (relative, size, expected['size']))
        elif check_md5 and file_md5(path) != expected['md5']:
            found.append('%s has MD5 %s, expected %s' % (relative, file_md5(path), expected['md5']))
    return found


def storage_files(manifest):
    """{uuid: {'size', 'md5'}} of the storage files a manifest lists."""
    return dict((relative.rsplit('/', 1)[1], value) for relative, value in manifest['files'].items()
                if relative.startswith('storage/'))
