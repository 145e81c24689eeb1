# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The manifest of a backup: what it holds, with sizes and MD5s, and how it was made.

Format 3 (written since 0.3.0) is three files: ``manifest-storage.bin.gz``, a record of 40 bytes per
storage file named by a uuid (uuid and MD5 as 16 bytes each, size as 8 bytes little-endian), sorted
by uuid, gzip-compressed (about 34 bytes per file on disk: uuids and MD5s are random, so text cannot
come close); ``manifest-files.jsonl.gz``, one JSON line ``[path, size, md5]`` per other file (the
configuration, the index or dump), sorted by path, gzip-compressed; and ``manifest.json``, the
backup's description, which names each listing's size and MD5 and is written last: its presence
with status ``complete`` is what makes a backup complete. The listings are read a block at a
time, so no consumer holds them in memory. Format 2 (every file in the JSON lines) and format 1
(``files`` inside manifest.json) stay readable.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import random
import re
import struct
import zlib

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_KEPT, Findings, OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    CHUNK, DIR_MODE, FILE_MODE, TreeReader, UnsafePath, copy_file, create_file, file_md5, hash_tree, hashing_workers,
    make_dirs, open_regular, others_can_write, safe_parts, walk_sorted)

FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
COLLECTION_VERSION = '0.1.0'
NAME = 'manifest.json'
LISTING = 'manifest-files.jsonl.gz'
STORAGE_LISTING = 'manifest-storage.bin.gz'
# The manifest's key that names each listing of format 3 (format 2 has the first only).
LISTING_KEYS = {'listing': LISTING, 'storage_listing': STORAGE_LISTING}
# A record of the storage listing: a file's uuid and MD5 as bytes, and its size.
_RECORD = struct.Struct('<16s16sQ')
# A storage path the storage listing can hold: storage/xx/yy/ and a uuid as Orthanc writes them.
_UUID_PATH = re.compile(r'^storage/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{4}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$')
# A uuid the storage listing can hold, as Orthanc writes them.
_UUID = re.compile(r'^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$')
# The folders of a backup: the configuration, a SQLite index, a database dump, the storage snapshot.
AREAS = ('config', 'index', 'db', 'storage')
_UUID_AT = len('storage/xx/yy/')
_STORAGE_KEY = re.compile(r'^storage/([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f-]*$')
_MD5 = re.compile(r'^[0-9a-f]{32}$')
# A storage entry as the writer formats it, recognised whole: the common case, read without a JSON parser.
_STORAGE_LINE = re.compile(rb'^\["(storage/([0-9a-f]{2})/([0-9a-f]{2})/\2\3[0-9a-f-]*)",(0|[1-9][0-9]{0,17}),"([0-9a-f]{32})"\]\n$')
_ENCODE_PATH = json.JSONEncoder().encode
# Lines compressed at once: one call per batch, not per file.
WRITE_BATCH = 4096
# The longest line a listing may hold: a path, a size and an MD5 take far less.
LINE_LIMIT = 64 * 1024
# The largest manifest.json read: a few KiB since format 2; format 1 listed every file inside.
MANIFEST_LIMIT = 256 * 1024 * 1024


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


class _ListingWriter:
    """A gzip listing written in batches, hashed as it is written, fsynced when closed."""

    def __init__(self, folder, name):
        self.name, self.batch = name, []
        self.raw = create_file(os.path.join(folder, name), FILE_MODE)
        self.hashed = _HashingFile(self.raw)
        self.compressed = gzip.GzipFile(fileobj=self.hashed, mode='wb', compresslevel=1, mtime=0)

    def add(self, data):
        self.batch.append(data)
        if len(self.batch) == WRITE_BATCH:
            self.compressed.write(b''.join(self.batch))
            self.batch = []

    def close(self):
        """Write what is left and sync; the listing's name, size and MD5 for the manifest."""
        with self.raw:
            with self.compressed:
                self.compressed.write(b''.join(self.batch))
            self.raw.flush()
            os.fsync(self.raw.fileno())
        return {'name': self.name, 'size': self.hashed.size, 'md5': self.hashed.digest.hexdigest()}

    def discard(self):
        """Close a listing whose writing failed, unfinished: its partial backup is removed."""
        try:
            self.compressed.close()
        finally:
            self.raw.close()


def write(folder, header, entries, storage=(), key=None):
    """Write the listings of ``entries`` ((path, size, md5), in sort_key order) and of ``storage`` ((uuid, size,
    md5) of storage files, in uuid order, which is their paths' order, after every path of ``entries``), then
    ``manifest.json`` (``header``, this format's number and the listings' figures, sealed with ``key``, a
    BackupKey, when given), each fsynced. Returns the manifest's path."""
    text = _ListingWriter(folder, LISTING)
    records = _ListingWriter(folder, STORAGE_LISTING)
    try:
        count, total = _write_listings(text, records, entries, storage)
        listings = {'listing': text.close(), 'storage_listing': records.close()}
    except BaseException:
        for listing in (text, records):
            listing.discard()
        raise
    values = dict(header, format=FORMAT_VERSION, files=count, bytes=total, **listings)
    return write_values(os.path.join(folder, NAME), key.seal(values) if key else values)


def write_values(path, values):
    """Write ``values`` as the manifest file ``path``, fsynced; the path."""
    with create_file(path, FILE_MODE) as handle:
        handle.write(json.dumps(values, indent=1, sort_keys=True).encode())
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _write_listings(text, records, entries, storage):
    """Write the entries and storage files (see write) to the ``text`` and ``records`` listings; (files, bytes)."""
    count = total = 0
    last = None
    for relative, size, md5 in entries:
        key = sort_key(relative)
        if last is not None and key <= last:
            raise ValueError('manifest entries out of order: %s after %s' % (relative, last))
        last = key
        if _UUID_PATH.match(relative):
            _add(text, records, None, relative[_UUID_AT:], size, md5)
        else:
            _add(text, records, relative, None, size, md5)
        count += 1
        total += size
    last_uuid = None
    for uuid, size, md5 in storage:
        # Compared as uuids, the order of their paths; the first as a path, after those of ``entries``.
        if (last_uuid is None and last is not None and sort_key(storage_path(uuid)) <= last) or (
                last_uuid is not None and uuid <= last_uuid):
            raise ValueError('manifest entries out of order: %s after %s' % (uuid, last_uuid or last))
        last_uuid = uuid
        _add(text, records, None if _UUID.match(uuid) else storage_path(uuid), uuid, size, md5)
        count += 1
        total += size
    return count, total


def _add(text, records, relative, uuid, size, md5):
    """A file into its listing: a JSON line for ``relative``, or a record when that is None (a storage file
    named by the ``uuid``)."""
    if relative is None:
        records.add(_RECORD.pack(bytes.fromhex(uuid.replace('-', '')), bytes.fromhex(md5), size))
    else:
        text.add(('[%s,%d,"%s"]\n' % (_ENCODE_PATH(relative), size, md5)).encode())


def storage_path(uuid):
    """The path in a backup of the storage file ``uuid``: ``storage/xx/yy/<uuid>``, as Orthanc names it."""
    return 'storage/%s/%s/%s' % (uuid[0:2], uuid[2:4], uuid)


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
    """A backup's description (the keys of ``manifest.json``), and its files through ``entries()``;
    ``authenticated``: its seal was checked with a backup key (see read)."""

    authenticated = False

    def __init__(self, folder, values, checked=True):
        super().__init__(values)
        self.folder = folder
        self._listed = None
        if values.get('format') == 1:
            self._listed = self._format1_files(values.get('files'))
            self['files'] = len(self._listed)
            self['bytes'] = sum(size for dummy, size, dummy in self._listed)
        else:
            for key in self.listing_keys():
                listing = values.get(key)
                if not (isinstance(listing, dict) and listing.get('name') == LISTING_KEYS[key]
                        and _is_count(listing.get('size')) and isinstance(listing.get('md5'), str)
                        and _MD5.match(listing['md5'])):
                    raise _invalid(folder, 'it does not name its listing of files (%s) with a size and MD5'
                                   % LISTING_KEYS[key])
            if not (_is_count(values.get('files')) and _is_count(values.get('bytes'))):
                raise _invalid(folder, 'it does not count its files and bytes')
            if checked:
                self._check_listing()

    def listing_keys(self):
        """The keys of the listings this manifest's format has."""
        return {1: (), 2: ('listing',)}.get(self.get('format'), tuple(LISTING_KEYS))

    def own_files(self):
        """The files of the backup that describe it: manifest.json and its listings."""
        return [NAME] + [LISTING_KEYS[key] for key in self.listing_keys()]

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

    def _blocks(self, key):
        """The decompressed blocks of the listing named by ``key``, which must be, once read to its end, the
        file of the size and MD5 the manifest names."""
        name = LISTING_KEYS[key]
        try:
            raw = open_regular(name, beneath=self.folder)
        except FileNotFoundError:
            raise _invalid(self.folder, 'its listing of files (%s) is missing' % name)
        except OSError as exc:
            raise _invalid(self.folder, 'its listing of files (%s) cannot be read (%s)' % (name, exc))
        with raw:
            if os.fstat(raw.fileno()).st_size != self[key]['size']:
                raise _invalid(self.folder, 'its listing of files (%s) is not the one it was written with (size '
                                            'differs)' % name)
            hashed = _HashingFile(raw)
            try:
                with gzip.GzipFile(fileobj=hashed, mode='rb') as listing:
                    yield from iter(lambda: listing.read(CHUNK), b'')
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                raise _invalid(self.folder, '%s cannot be read (%s)' % (name, exc))
            while hashed.read(CHUNK):
                pass
        if hashed.size != self[key]['size'] or hashed.digest.hexdigest() != self[key]['md5']:
            raise _invalid(self.folder, 'its listing of files (%s) is not the one it was written with (size or MD5 '
                                        'differ)' % name)

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

    def storage_files(self):
        """(uuid, size, md5) of every storage file the backup holds, in uuid order, checked as entries() checks
        them: for a reader that wants uuids, without building their paths and parsing them back."""
        if self._listed is not None or 'storage_listing' not in self.listing_keys():
            return ((relative[_UUID_AT:], size, md5) for relative, size, md5 in self.entries('storage'))
        return self._listing_entries('storage/', as_uuids=True)

    def _lines(self):
        """(sort key, (path, size, md5)) of each line of the JSON lines listing, checked, in strictly increasing
        order."""
        last = None
        for number, line in enumerate(_lines(self._blocks('listing')), 1):
            entry = self._parse(line, number)
            key = sort_key(entry[0])
            if last is not None and key <= last:
                raise _invalid(self.folder, '%s is listed out of order or twice' % entry[0])
            last = key
            yield key, entry

    def _records(self):
        """(uuid, size, md5) of each record of the storage listing, checked to be in strictly increasing order."""
        rest, last = b'', b''
        for block in self._blocks('storage_listing'):
            data = rest + block
            whole = len(data) - len(data) % _RECORD.size
            for uuid, md5, size in _RECORD.iter_unpack(data[:whole]):
                if uuid <= last:
                    raise _invalid(self.folder, 'storage file %s is listed out of order or twice' % uuid.hex())
                last = uuid
                yield _uuid_text(uuid), size, md5.hex()
            rest = data[whole:]
        if rest:
            raise _invalid(self.folder, '%s ends inside a record' % STORAGE_LISTING)

    def sample(self, count):
        """Up to ``count`` entries (path, size, md5) picked at random among the backup's files. The listings are read
        to their end and must be those the manifest names (size and MD5) and hold its number of files; a record of
        the storage listing is decoded only when it is picked, so a million files take a fraction of a second."""
        if 'storage_listing' not in self.listing_keys():
            return _reservoir(self.entries(), count)
        lines = [entry for dummy, entry in self._lines()]
        picks = sorted(random.sample(range(self['files']), min(count, self['files'])))
        picked = [lines[number] for number in picks if number < len(lines)]
        wanted = collections.deque(number - len(lines) for number in picks if number >= len(lines))
        seen, rest = 0, b''
        for block in self._blocks('storage_listing'):
            data = rest + block
            whole = len(data) // _RECORD.size
            while wanted and wanted[0] < seen + whole:
                uuid, md5, size = _RECORD.unpack_from(data, (wanted.popleft() - seen) * _RECORD.size)
                picked.append((storage_path(_uuid_text(uuid)), size, md5.hex()))
            seen += whole
            rest = data[whole * _RECORD.size:]
        if rest or len(lines) + seen != self['files']:
            raise _invalid(self.folder, 'its listings do not hold the %d files the manifest says' % self['files'])
        return picked

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

    def _merged(self, as_uuids):
        """(sort key, entry) of each line and (None, entry) of each record of the listings, in path order: a
        record's key is computed only while lines are left to place among the records (in format 3, storage
        files whose uuids a record cannot hold). A record's entry is (uuid, size, md5) ``as_uuids``, else
        (path, size, md5)."""
        lines = self._lines()
        pending = next(lines, None)
        for uuid, size, md5 in self._records() if 'storage_listing' in self.listing_keys() else ():
            if pending is not None:
                key = sort_key(storage_path(uuid))
                while pending is not None and pending[0] < key:
                    yield pending
                    pending = next(lines, None)
                if pending is not None and pending[0] == key:
                    raise _invalid(self.folder, '%s is listed out of order or twice' % pending[1][0])
            yield None, ((uuid if as_uuids else storage_path(uuid)), size, md5)
        while pending is not None:
            yield pending
            pending = next(lines, None)

    def _listing_entries(self, prefix, as_uuids=False):
        """The entries of the listings whose paths start with ``prefix`` (storage files as (uuid, size, md5)
        ``as_uuids``, with the prefix storage/), read as they are consumed (see _merged); each listing must be
        sorted, each path listed once, and their entries must number as the manifest says."""
        count = total = 0
        prefix_key = sort_key(prefix)
        for key, entry in self._merged(as_uuids):
            count += 1
            total += entry[1]
            if count > self['files']:    # found before a reader has taken more than the manifest promised
                raise _invalid(self.folder, 'its listings hold more than the %d files the manifest says' % self['files'])
            if key is None:    # a record: a storage file, whose area sorts last
                if prefix not in ('', 'storage/'):
                    return
                yield entry
            elif entry[0].startswith(prefix):
                yield (entry[0][_UUID_AT:],) + entry[1:] if as_uuids else entry
            elif prefix and key > prefix_key:
                return    # sorted: the area is over
        if count != self['files']:
            raise _invalid(self.folder, 'its listings hold %d files, the manifest says %d' % (count, self['files']))
        if total != self['bytes']:
            raise _invalid(self.folder, 'its listings hold %d bytes, the manifest says %d' % (total, self['bytes']))


def _uuid_text(raw):
    text = raw.hex()
    return '%s-%s-%s-%s-%s' % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])


def _reservoir(entries, count):
    """Up to ``count`` of ``entries`` picked at random as they go by, each as likely as any other."""
    picked = []
    for number, entry in enumerate(entries):
        slot = number if number < count else random.randrange(number + 1)
        if slot < count:
            picked[slot:slot + 1] = [entry]
    return picked


def _lines(blocks):
    """The lines of a decompressed listing's ``blocks``, each with its newline (the last one may lack it): a
    line longer than LINE_LIMIT is cut there and so fails to parse."""
    rest = b''
    for block in blocks:
        lines = (rest + block).split(b'\n')
        rest = lines.pop()
        if len(rest) > LINE_LIMIT:
            lines.append(rest[:LINE_LIMIT])
            rest = b''
        for line in lines:
            yield line + b'\n'
    if rest:
        yield rest


def read_values(folder):
    """The values of ``folder``'s manifest.json, read through no link and no larger than MANIFEST_LIMIT, with their
    status and identity checked: what a listing of backups needs, without the listings."""
    path = os.path.join(folder, NAME)
    try:
        with open_regular(NAME, beneath=folder) as handle:
            text = handle.read(MANIFEST_LIMIT + 1)
        if len(text) > MANIFEST_LIMIT:
            raise ValueError('it is larger than %d MiB' % (MANIFEST_LIMIT // 2**20))
        values = json.loads(text)
    except FileNotFoundError:
        raise OrthancOpsError('%s has no %s: it is not a complete backup. Choose another backup.' % (folder, NAME))
    except (OSError, ValueError, RecursionError) as exc:
        raise OrthancOpsError('Cannot read %s: %s. The backup is damaged; choose another backup.'
                              % (path, 'it nests too deep' if isinstance(exc, RecursionError) else exc))
    if not isinstance(values, dict):
        raise _invalid(folder, 'it does not hold a JSON object')
    if values.get('status') != 'complete' or values.get('format') not in READABLE_FORMATS:
        raise OrthancOpsError('%s is not a complete backup of format %s (status %r, format %r).'
                              % (folder, ' or '.join(map(str, READABLE_FORMATS)), values.get('status'),
                                 values.get('format')))
    if not isinstance(values.get('counts'), dict) or not isinstance(values.get('backup_id'), str):
        raise _invalid(folder, 'it has no counts or backup id')
    return values


def trust_problem(folder, values, key):
    """Why the backup ``folder``, whose manifest holds ``values``, is not to be believed, or None: with ``key`` (a
    BackupKey), it must be signed with it; without, nobody but root (this user) may be able to write it."""
    if key:
        problem = key.problem(values)
        return problem and 'it is not authenticated by backup_key: %s' % problem
    problem = others_can_write(folder)
    return problem and 'it is not authenticated (no backup_key) and others can change it: %s' % problem


def authenticate(folder, values, key):
    """Refuse the manifest ``values`` of ``folder`` unless it is to be believed (see trust_problem)."""
    problem = trust_problem(folder, values, key)
    if problem:
        raise OrthancOpsError('Backup %s is left alone: %s. Someone who can write the repository may have made or '
                              'changed it. Use another backup. Without backup_key, only backups in folders nobody '
                              'but root can write are used; with it (the roles make one), only those it signed: '
                              'orthanc_backup_verify (sign=true) checks a backup and signs it.' % (folder, problem))


def read(folder, checked=True, key=None):
    """The manifest of a complete backup, checked to be well formed (and signed by ``key``, a BackupKey, when
    given); its entries are checked as they are read. ``checked``: its listing read through once now, so that a
    damaged listing fails here (see Manifest)."""
    values = read_values(folder)
    authenticate(folder, values, key)
    manifest = Manifest(folder, values, checked)
    manifest.authenticated = key is not None
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


def _paired(found, listed):
    """(path, walked entry or None, (size, md5) or None) for the union of a sorted walk and sorted entries."""
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


def problems(folder, manifest, check_md5=True, checked_later=(), keep=PROBLEMS_KEPT, stop=bool):
    """What makes ``folder`` differ from its manifest (Findings: the first ``keep`` and a count): files
    missing, of another size or (with check_md5) of another MD5, and anything the manifest does not list
    (files, symbolic links, devices). The size and MD5 of the files under the prefixes ``checked_later`` are
    not checked here: their caller checks each copy it makes. The folder and the listing are walked side by
    side in order, the files hashed meanwhile, each file's size checked as it is opened. The walk ends early,
    its findings incomplete, once ``stop()`` (asked at each entry) is true."""
    found = Findings(keep)

    def to_hash():
        own = manifest.own_files()
        walked = ((relative, entry) for relative, entry in walk_sorted(folder) if relative not in own)
        for relative, entry, listed in _paired(walked, manifest.entries()):
            if stop():
                return
            regular = entry is not None and entry.is_file(follow_symlinks=False)
            if entry is not None and entry.is_symlink():
                found.add('%s is a symbolic link' % relative)
            elif entry is not None and not regular:
                found.add('%s is not a regular file' % relative)
            elif listed is None:
                found.add('%s is not listed in the manifest' % relative)
            elif regular and not relative.startswith(checked_later):
                if check_md5:
                    yield relative, listed[0], listed
                elif entry.stat(follow_symlinks=False).st_size != listed[0]:
                    found.add('%s has %d bytes, expected %d' % (relative, entry.stat(follow_symlinks=False).st_size,
                                                                listed[0]))
            if listed is not None and not regular:
                found.add('%s is missing' % relative)

    _compare(found, hash_tree(folder, to_hash(), hashing_workers(manifest.get('files') or 0)))
    return found


def sampled_problems(folder, manifest, count, keep=PROBLEMS_KEPT):
    """What makes ``count`` files of ``folder`` picked at random differ from its manifest (Findings): missing, not
    regular, of another size or MD5. The listing is read to its end, where its own checks run, the files picked
    meanwhile (see Manifest.sample). A backup rewritten whole (ransomware) cannot pass, and the cost is ``count``
    files per backup whatever its size: a check every backup of a repository can have at every run."""
    found = Findings(keep)
    _compare(found, hash_tree(folder, sorted(((relative, size, (size, md5)) for relative, size, md5
                                              in manifest.sample(count)),
                                             key=lambda item: sort_key(item[0]))))
    return found


def _compare(found, hashed):
    """Add to ``found`` each file of ``hashed`` (see hash_tree; payload: the listed size and MD5) that differs."""
    for relative, (expected_size, expected_md5), size, md5 in hashed:
        if size is None:
            found.add('%s cannot be read as a regular file' % relative)
        elif size != expected_size:
            found.add('%s has %d bytes, expected %d' % (relative, size, expected_size))
        elif md5 != expected_md5:
            found.add('%s has MD5 %s, expected %s' % (relative, md5, expected_md5))


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
    """(path relative to the area's folder, size, md5) of the files the manifest lists in ``area``, in order."""
    return ((relative[len(area) + 1:], size, md5) for relative, size, md5 in manifest.entries(area))


def private_area(folder, manifest, area, scratch):
    """The folder to read the ``area`` of the backup ``folder`` from: the backup itself when nobody else can change
    it, else the new private folder ``scratch``, where the area's files are copied, each checked against the listing
    as it is read. A tool reads a dump by name, after its MD5 was checked: in a folder others can write, the file it
    reads might not be the one checked."""
    if others_can_write(folder) is None:
        return folder
    os.mkdir(scratch, DIR_MODE)
    with TreeReader(folder) as tree:
        for relative, size, md5 in manifest.entries(area):
            target = os.path.join(scratch, relative)
            make_dirs(os.path.dirname(target))
            found = copy_file(relative, target, beneath=tree)
            if found != (size, md5):
                raise OrthancOpsError('%s in %s has size %d and MD5 %s, expected %d and %s: the backup is damaged; '
                                      'use another backup.' % (relative, folder, found[0], found[1], size, md5))
    return scratch


# The manifest's counts and the keys of Orthanc's /statistics that hold them.
STATISTICS_KEYS = {'patients': 'CountPatients', 'studies': 'CountStudies',
                   'series': 'CountSeries', 'instances': 'CountInstances'}


def count_differences(manifest, statistics):
    """How an Orthanc's ``statistics`` differ from the counts of ``manifest``: one sentence per kind of resource."""
    return ['%s: Orthanc has %s, the backup %s' % (label, statistics.get(key), manifest['counts'].get(label))
            for label, key in STATISTICS_KEYS.items() if statistics.get(key) != manifest['counts'].get(label)]
