# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manifest of a backup: what it holds, with sizes and MD5s, and how it was made.

Format 2 (written since 0.2.0) is two files: ``manifest-files.jsonl.gz``, one JSON line
``[path, size, md5]`` per file, sorted by path, gzip-compressed; and ``manifest.json``, the
backup's description, which names the listing's size and MD5 and is written last: its
presence with status ``complete`` is what makes a backup complete. Both are read a line at a
time, so no consumer holds the listing in memory. Format 1 (``files`` inside manifest.json)
stays readable.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import zlib

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_KEPT, Findings, OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    CHUNK, FILE_MODE, TreeReader, UnsafePath, create_file, file_md5, hash_tree, hashing_threads, open_regular,
    safe_parts, walk_sorted)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
COLLECTION_VERSION = '0.1.0'
NAME = 'manifest.json'
LISTING = 'manifest-files.jsonl.gz'
# The folders of a backup: the configuration, a SQLite index, a database dump, the storage snapshot.
AREAS = ('config', 'index', 'db', 'storage')
_STORAGE_KEY = re.compile(r'^storage/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f-]*$')
_MD5 = re.compile(r'^[0-9a-f]{32}$')
# A storage entry as the writer formats it, recognised whole: the common case, read without a JSON parser.
_STORAGE_LINE = re.compile(rb'^\["(storage/([0-9a-f]{2})/([0-9a-f]{2})/\2\3[0-9a-f-]*)",(0|[1-9][0-9]{0,17}),"([0-9a-f]{32})"\]\n$')
_ENCODE_PATH = json.JSONEncoder().encode
# Lines compressed at once: one call per batch, not per file.
WRITE_BATCH = 4096
# The longest line a listing may hold: a path, a size and an MD5 take far less.
LINE_LIMIT = 64 * 1024


def sort_key(relative):
    """The order of a listing: path components compared one by one, the order of a sorted walk (no name
    holds a NUL, so the joined string compares as the list of components does)."""
    return relative.replace('/', '\0')


class _HashingFile:
    """A binary file that hashes what passes through it: the listing's MD5 without a second read."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.md5(), 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def read(self, size=-1):
        data = self.handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def flush(self):
        self.handle.flush()


def write(folder, header, entries):
    """Write the listing of ``entries`` ((path, size, md5), in sort_key order), then ``manifest.json``
    (``header`` and the listing's figures), each fsynced. Returns the manifest's path."""
    count = total = 0
    last = None
    lines = []
    with create_file(os.path.join(folder, LISTING), FILE_MODE) as raw:
        hashed = _HashingFile(raw)
        with gzip.GzipFile(fileobj=hashed, mode='wb', compresslevel=1, mtime=0) as listing:
            for relative, size, md5 in entries:
                key = sort_key(relative)
                if last is not None and key <= last:
                    raise ValueError('manifest entries out of order: %s after %s' % (relative, last))
                last = key
                lines.append('[%s,%d,"%s"]\n' % (_ENCODE_PATH(relative), size, md5))
                count += 1
                total += size
                if len(lines) == WRITE_BATCH:
                    listing.write(''.join(lines).encode())
                    lines = []
            listing.write(''.join(lines).encode())
        raw.flush()
        os.fsync(raw.fileno())
    values = dict(header, files=count, bytes=total, listing={'name': LISTING, 'size': hashed.size,
                                                             'md5': hashed.digest.hexdigest()})
    path = os.path.join(folder, NAME)
    with create_file(path, FILE_MODE) as handle:
        handle.write(json.dumps(values, indent=1, sort_keys=True).encode())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _invalid(folder, why):
    return OrthancOpsError('The manifest of %s is not valid: %s. The backup is damaged or was altered; do not use it, '
                           'choose another backup.' % (folder, why))


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(folder, relative, size, md5):
    if not valid_key(relative):
        raise _invalid(folder, '%r is not a path inside the backup (%s/...)' % (relative, '/..., '.join(AREAS)))
    if not (_is_count(size) and isinstance(md5, str) and _MD5.match(md5)):
        raise _invalid(folder, 'the entry of %s has no valid size and MD5' % relative)


class Manifest(dict):
    """A backup's description (the keys of ``manifest.json``), and its files through ``entries()``."""

    def __init__(self, folder, values):
        super().__init__(values)
        self.folder = folder
        self._listed = None
        if values.get('format') == 1:
            self._listed = self._format1_files(values.get('files'))
            self['files'] = len(self._listed)
            self['bytes'] = sum(size for dummy, size, dummy in self._listed)
        else:
            listing = values.get('listing')
            if not (isinstance(listing, dict) and listing.get('name') == LISTING and _is_count(listing.get('size'))
                    and isinstance(listing.get('md5'), str) and _MD5.match(listing['md5'])
                    and _is_count(values.get('files')) and _is_count(values.get('bytes'))):
                raise _invalid(folder, 'it does not name its listing of files (%s) with a size and MD5' % LISTING)
            self._check_listing()

    def _format1_files(self, files):
        if not isinstance(files, dict):
            raise _invalid(self.folder, 'it has no "files" list')
        listed = []
        for relative, entry in files.items():
            if not isinstance(entry, dict):
                raise _invalid(self.folder, 'the entry of %s has no valid size and MD5' % relative)
            _check_entry(self.folder, relative, entry.get('size'), entry.get('md5'))
            listed.append((relative, entry['size'], entry['md5']))
        return sorted(listed, key=lambda item: sort_key(item[0]))

    def _open_listing(self):
        try:
            return open_regular(LISTING, beneath=self.folder)
        except FileNotFoundError:
            raise _invalid(self.folder, 'its listing of files (%s) is missing' % LISTING)
        except OSError as exc:
            raise _invalid(self.folder, 'its listing of files (%s) cannot be read (%s)' % (LISTING, exc))

    def _listing_matches(self, hashed):
        listing = self['listing']
        if hashed.size != listing['size'] or hashed.digest.hexdigest() != listing['md5']:
            raise _invalid(self.folder, 'its listing of files (%s) is not the one it was written with (size or MD5 '
                                        'differ)' % LISTING)

    def _check_listing(self):
        """The listing is the one written with this manifest and well formed, read once through: a damaged or
        altered listing makes the backup unusable at once, as a damaged manifest does."""
        for dummy in self._listing_entries(''):
            pass

    def entries(self, area=None):
        """(path, size, md5) of every file the backup holds (in ``area`` only, if given), in sort_key order,
        each checked to be a plain path inside the backup with a size and an MD5. The listing is read a line
        at a time; when it ends, its size and MD5 are checked again against those the manifest names."""
        prefix = area + '/' if area else ''
        if self._listed is not None:
            return (entry for entry in self._listed if entry[0].startswith(prefix))
        return self._listing_entries(prefix)

    def _parse(self, line, number):
        """(path, size, md5) of one line of the listing, checked."""
        match = _STORAGE_LINE.match(line)
        if match:
            return match.group(1).decode(), int(match.group(4)), match.group(5).decode()
        try:
            entry = json.loads(line) if line.endswith(b'\n') else None
        except ValueError:
            entry = None
        if not (isinstance(entry, list) and len(entry) == 3):
            raise _invalid(self.folder, 'line %d of %s is not [path, size, md5]' % (number, LISTING))
        _check_entry(self.folder, *entry)
        return tuple(entry)

    def _listing_entries(self, prefix):
        """The entries of the gzip listing whose paths start with ``prefix``, read as they are consumed; the
        listing must be sorted, each path once, and must match the MD5 and entry count the manifest records."""
        count, last = 0, None
        with self._open_listing() as raw:
            hashed = _HashingFile(raw)
            try:
                with gzip.GzipFile(fileobj=hashed, mode='rb') as listing:
                    for line in _lines(listing):
                        entry = self._parse(line, count + 1)
                        key = sort_key(entry[0])
                        if last is not None and key <= last:
                            raise _invalid(self.folder, '%s is listed out of order or twice' % entry[0])
                        last = key
                        count += 1
                        if entry[0].startswith(prefix):
                            yield entry
                        elif prefix and key > sort_key(prefix):
                            return    # sorted: the area is over
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                raise _invalid(self.folder, '%s cannot be read (%s)' % (LISTING, exc))
            while hashed.read(CHUNK):
                pass
        self._listing_matches(hashed)
        if count != self['files']:
            raise _invalid(self.folder, '%s lists %d files, the manifest says %d' % (LISTING, count, self['files']))


def _lines(listing):
    """The lines of a decompressed listing, each with its newline (the last one may lack it), read in
    blocks: a line longer than LINE_LIMIT is cut there and so fails to parse."""
    rest = b''
    for block in iter(lambda: listing.read(CHUNK), b''):
        lines = (rest + block).split(b'\n')
        rest = lines.pop()
        if len(rest) > LINE_LIMIT:
            lines.append(rest[:LINE_LIMIT])
            rest = b''
        for line in lines:
            yield line + b'\n'
    if rest:
        yield rest


def read(folder):
    """The manifest of a complete backup, checked to be well formed; its entries are checked as they are read."""
    path = os.path.join(folder, NAME)
    try:
        with open_regular(NAME, beneath=folder) as handle:
            values = json.load(handle)
    except FileNotFoundError:
        raise OrthancOpsError('%s has no %s: it is not a complete backup. Choose another backup.' % (folder, NAME))
    except (OSError, ValueError) as exc:
        raise OrthancOpsError('Cannot read %s: %s. The backup is damaged; choose another backup.' % (path, exc))
    if not isinstance(values, dict):
        raise _invalid(folder, 'it does not hold a JSON object')
    if values.get('status') != 'complete' or values.get('format') not in READABLE_FORMATS:
        raise OrthancOpsError('%s is not a complete backup of format %s (status %r, format %r).'
                              % (folder, ' or '.join(map(str, READABLE_FORMATS)), values.get('status'),
                                 values.get('format')))
    if not isinstance(values.get('counts'), dict) or not isinstance(values.get('backup_id'), str):
        raise _invalid(folder, 'it has no counts or backup id')
    return Manifest(folder, values)


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


def _paired(found, listed):
    """(path, stat or None, (size, md5) or None) for the union of a sorted walk and sorted entries."""
    found, listed = iter(found), iter(listed)
    walked, entry = next(found, None), next(listed, None)
    while walked or entry:
        walked_key = sort_key(walked[0]) if walked else None
        entry_key = sort_key(entry[0]) if entry else None
        if entry is None or (walked is not None and walked_key < entry_key):
            yield walked[0], walked[1], None
            walked = next(found, None)
        elif walked is None or entry_key < walked_key:
            yield entry[0], None, entry[1:]
            entry = next(listed, None)
        else:
            yield walked[0], walked[1], entry[1:]
            walked, entry = next(found, None), next(listed, None)


def problems(folder, manifest, check_md5=True, hashed_later=(), keep=PROBLEMS_KEPT):
    """What makes ``folder`` differ from its manifest (Findings: the first ``keep`` and a count): files
    missing, of another size or (with check_md5) of another MD5, and anything the manifest does not list
    (files, symbolic links, devices). The files under the prefixes ``hashed_later`` are not hashed here:
    their caller checks each copy it makes. The folder and the listing are walked side by side in order,
    the files hashed meanwhile."""
    found = Findings(keep)

    def to_hash():
        walked = ((relative, info) for relative, info in walk_sorted(folder) if relative not in (NAME, LISTING))
        for relative, info, listed in _paired(walked, manifest.entries()):
            if info is not None and stat.S_ISLNK(info.st_mode):
                found.add('%s is a symbolic link' % relative)
            elif info is not None and not stat.S_ISREG(info.st_mode):
                found.add('%s is not a regular file' % relative)
            elif listed is None:
                found.add('%s is not listed in the manifest' % relative)
            elif info is not None and info.st_size != listed[0]:
                found.add('%s has %d bytes, expected %d' % (relative, info.st_size, listed[0]))
            elif info is not None and check_md5 and not relative.startswith(hashed_later):
                yield relative, listed[1]
            if listed is not None and (info is None or not stat.S_ISREG(info.st_mode)):
                found.add('%s is missing' % relative)

    threads = hashing_threads(manifest.get('bytes') or 0, manifest.get('files') or 0)
    for relative, expected, md5 in hash_tree(folder, to_hash(), threads):
        if md5 is None:
            found.add('%s cannot be read as a regular file' % relative)
        elif md5 != expected:
            found.add('%s has MD5 %s, expected %s' % (relative, md5, expected))
    return found


def area_problems(folder, manifest, area, keep=PROBLEMS_KEPT):
    """What makes the files ``manifest`` lists in ``area`` differ from it (Findings): each must be a regular file,
    reached through no link, of its MD5. Files the manifest does not list are not looked for: for a
    reader that opens only listed files by their listed paths, they cannot matter."""
    found = Findings(keep)
    with TreeReader(folder) as tree:
        for relative, dummy, md5 in manifest.entries(area):
            try:
                actual = file_md5(relative, beneath=tree)
            except FileNotFoundError:
                found.add('%s is missing' % relative)
                continue
            except OSError as exc:
                found.add('%s cannot be read as a regular file (%s)' % (relative, exc))
                continue
            if actual != md5:
                found.add('%s has MD5 %s, expected %s' % (relative, actual, md5))
    return found


def area_entries(manifest, area):
    """(path relative to the area's folder, md5) of the files the manifest lists in ``area``, in order."""
    return ((relative[len(area) + 1:], md5) for relative, dummy, md5 in manifest.entries(area))


# The manifest's counts and the keys of Orthanc's /statistics that hold them.
STATISTICS_KEYS = {'patients': 'CountPatients', 'studies': 'CountStudies',
                   'series': 'CountSeries', 'instances': 'CountInstances'}


def count_differences(manifest, statistics):
    """How an Orthanc's ``statistics`` differ from the counts of ``manifest``: one sentence per kind of resource."""
    return ['%s: Orthanc has %s, the backup %s' % (label, statistics.get(key), manifest['counts'].get(label))
            for label, key in STATISTICS_KEYS.items() if statistics.get(key) != manifest['counts'].get(label)]
