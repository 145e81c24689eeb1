# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The audit phase: compare Orthanc's storage folder with what its index references, while it runs.

Orphans are files no attachment references; missing and damaged files are referenced ones that
are absent or differ in size (or MD5) from what Orthanc recorded. The storage is listed first,
then the index, read directly: a SQLite index from a copy taken while Orthanc is frozen for
milliseconds (no other process may open it while Orthanc runs), PostgreSQL and MySQL with one
read-only query; an index this collection does not know, or whose driver the host lacks, over
REST. A file is an orphan only if it is older than ``min_age``, so a file whose instance is
being stored right now is never taken for one; a referenced file found missing or damaged is
confirmed over REST (its resource may have been deleted since the index was read). Orphans go to a quarantine folder (or are
deleted); missing and damaged files can be repaired from the backups of the repository, which
hold the very same bytes under the same uuid.
"""

from __future__ import annotations

import errno
import json
import os
import time
from contextlib import contextmanager, nullcontext
from urllib.parse import urlparse

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _config, _manifest, _service
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import Environment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._context import Context
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import check_runs
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_SHOWN, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import (
    DIR_MODE, copy_file, create_file, fd_path, folder_beneath, hash_tree, hashing_workers, private_folder)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._ledger import private_ledger
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import orthanc_lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import (
    configuration_of, orthanc_pids, process_environment, same_path, shown)
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository, new_backup_id
from ansible_collections.orthanc_ops.backup.plugins.module_utils._snapshot import relative_path, scan_storage

ORPHANS_LIST = 'orphans.json'
LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')
DEFAULT_DICOM_PORT = 4242


def check_identity(rest, config):
    """Refuse to compare a storage folder with the index of another Orthanc (a wrong url): same ports
    over REST, and a local Orthanc on the url's port must run this configuration (every container
    reports the same ports from inside)."""
    url = urlparse(rest.url)
    if url.hostname in LOCAL_HOSTS:
        check_runs(config.path, url.port or (443 if url.scheme == 'https' else 80))
    system = rest.system()
    expected = {'HttpPort': config.http_port, 'DicomPort': config.port('DicomPort', DEFAULT_DICOM_PORT)}
    different = ['%s %s (the configuration says %s)' % (key, system.get(key), value)
                 for key, value in sorted(expected.items()) if system.get(key) != value]
    if different:
        raise OrthancOpsError('The Orthanc at %s is not the one configured by %s: it has %s. Point "url" at the '
                              'Orthanc that uses this configuration.' % (rest.url, config.path, ', '.join(different)))


def sharing_orthancs(storage_dir, config_path):
    """Other Orthancs on this host whose configuration uses ``storage_dir`` as theirs: "pid N (config)"."""
    found = []
    for pid in orthanc_pids():
        other = configuration_of(pid)
        if not other or same_path(other, config_path):
            continue
        root = '/proc/%d/root' % pid
        try:
            theirs = _config.load(other, Environment([('pid %d' % pid, process_environment(pid))], complete=True)).storage_dir
            # An absolute StorageDirectory is a path in that process's own root (a container's).
            if same_path(theirs if theirs.startswith(root + '/') else root + theirs, storage_dir):
                found.append('pid %d (%s)' % (pid, shown(other)))
        except (OrthancOpsError, OSError):
            continue
    return found


def cleanup_refusal(storage_dir, config_path, referenced, unrepaired, pending):
    """Why orphans must not be moved or deleted, or None: the index may not be this folder's (``referenced``
    attachments), or ``pending`` files are queued for deletion, which cannot be told from orphans."""
    if pending:
        return ('the DelayedDeletion plugin has %d file(s) queued for deletion: Orthanc removed them from its index '
                'and the plugin deletes them in the background, so until then they cannot be told from orphans. Run '
                'the audit again once GET /plugins/delayed-deletion/status says FilesPendingDeletion 0.' % pending)
    if unrepaired:
        return ('%d file(s) that the index references are missing or damaged, so the index and the storage '
                'folder %s may not belong together (a wrong url or config, an unmounted folder). Repair them '
                '(repair: true) or check url and config first.' % (len(unrepaired), storage_dir))
    if not referenced:
        return ('the Orthanc at the url references no file at all while %s holds some: it is not the Orthanc that '
                'uses this folder, or its index was lost. Check url and config first.' % storage_dir)
    sharing = sharing_orthancs(storage_dir, config_path)
    if sharing:
        return ('the storage folder %s is also the storage folder of %s: the orphans of one Orthanc are the files of '
                'the other. Give each Orthanc its own folder.' % (storage_dir, ', '.join(sharing)))
    return None


# The ledger of an audit: the files of the storage folder and the attachments the index references.
TABLES = {
    'disk': 'uuid TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL',
    'referenced': 'uuid TEXT PRIMARY KEY, size INTEGER, md5 TEXT, resource TEXT, attachment TEXT',
}
_REFERENCED_ON_DISK = ('SELECT r.uuid, r.size, r.md5, r.resource, r.attachment, d.size FROM referenced r '
                       'JOIN disk d ON d.uuid = r.uuid ')


def list_disk(ledger, storage_dir):
    """Record the files of the storage folder, (uuid, size, mtime) each; return how many there are."""
    return ledger.fill('disk', ((uuid, stat.st_size, stat.st_mtime) for uuid, entry in scan_storage(storage_dir)
                                for stat in (entry.stat(follow_symlinks=False),)))


def add_late_files(ledger, storage_dir):
    """Record the referenced files absent from the listing that are there now: stored after it, they are
    not missing. Returns how many."""
    added = 0
    with ledger.aside('SELECT r.uuid FROM referenced r LEFT JOIN disk d ON d.uuid = r.uuid WHERE d.uuid IS NULL') \
            as absent:
        for uuid, in absent:
            try:
                stat = os.stat(os.path.join(storage_dir, relative_path(uuid)))
            except FileNotFoundError:
                continue
            ledger.db.execute('INSERT INTO disk VALUES (?, ?, ?)', (uuid, stat.st_size, stat.st_mtime))
            added += 1
    return added


def _entry(row):
    return {'uuid': row[0], 'size': row[1], 'md5': row[2], 'resource': row[3], 'attachment': row[4]}


def _hash_problem(row, size, md5):
    if size is None:
        return 'not readable as a regular file'
    if md5 is None:
        return '%d bytes, Orthanc recorded %d' % (size, row[1])
    return 'MD5 %s, Orthanc recorded %s' % (md5, row[2])


def classify(ledger, cutoff, check_md5, storage_dir):
    """(orphans, young, missing, damaged) from the storage listing and the index in ``ledger``, each list
    sorted by uuid. With ``check_md5``, the files of the right size are hashed (see hash_tree)."""
    orphans, young = [], 0
    for uuid, size, mtime in ledger.db.execute('SELECT d.uuid, d.size, d.mtime FROM disk d LEFT JOIN referenced r '
                                               'ON r.uuid = d.uuid WHERE r.uuid IS NULL ORDER BY d.uuid'):
        if mtime < cutoff:
            orphans.append({'uuid': uuid, 'path': os.path.join(storage_dir, relative_path(uuid)), 'size': size})
        else:
            young += 1
    missing = [_entry(row) for row in ledger.db.execute(
        'SELECT r.uuid, r.size, r.md5, r.resource, r.attachment FROM referenced r LEFT JOIN disk d '
        'ON d.uuid = r.uuid WHERE d.uuid IS NULL ORDER BY r.uuid')]
    damaged = [dict(_entry(row), problem='%d bytes, Orthanc recorded %d' % (row[5], row[1]))
               for row in ledger.db.execute(_REFERENCED_ON_DISK + 'WHERE d.size != r.size')]
    if check_md5:
        workers = hashing_workers(ledger.db.execute('SELECT COUNT(*) FROM disk').fetchone()[0])
        same_size = ledger.db.execute(_REFERENCED_ON_DISK + 'WHERE d.size = r.size ORDER BY r.uuid')
        to_hash = ((relative_path(row[0]), row[1], row) for row in same_size)
        damaged.extend(dict(_entry(row), problem=_hash_problem(row, size, md5))
                       for dummy, row, size, md5 in hash_tree(storage_dir, to_hash, workers) if md5 != row[2])
    return orphans, young, missing, sorted(damaged, key=lambda entry: entry['uuid'])


def sources_in(repository, wanted):
    """{uuid: (backup folder, path in it) of a copy with the MD5 Orthanc recorded}, newest backups first."""
    sources = {}
    for backup_id in reversed(repository.backup_ids()):
        remaining = set(wanted) - set(sources)
        if not remaining:
            break
        folder = repository.backup_path(backup_id)
        found = {}
        try:
            for relative, dummy, md5 in _manifest.read(folder, key=repository.key).entries('storage'):
                uuid = relative.rsplit('/', 1)[1]
                if uuid in remaining and md5 == wanted[uuid]['md5']:
                    found[uuid] = (folder, relative)
        except OrthancOpsError:
            continue    # a damaged backup is no source, not even for what it listed before the damage
        sources.update(found)
    return sources


class Audit(Context):
    """The audit of one Orthanc's storage folder against its index, and the cleaning and repairs it allows."""

    def __init__(self, module):
        super().__init__(module)
        self.check_layout()
        self.backend, self.direct_refusal = None, None
        try:
            self.backend = registry.for_config(module, self.config)
        except OrthancOpsError as exc:    # an index plugin we do not know, or a host without its driver
            self.direct_refusal = str(exc)
        self.storage_dir = self.config.storage_dir
        self.quarantine = self.params['quarantine'] or self.storage_dir.rstrip('/') + '-quarantine'
        self.audit_id = new_backup_id()
        self._quarantined = None    # the descriptor of <quarantine>/<audit id>, once made
        for option in ('min_age', 'list_limit'):
            if self.params[option] < 0:
                raise OrthancOpsError('%s cannot be negative (%d).' % (option, self.params[option]))

    def run(self):
        """Compare the storage with the index while Orthanc serves; then quarantine (or delete) the orphans and
        repair the missing or damaged files from the backups, as the options ask, holding the Orthanc's lock."""
        started = time.monotonic()
        result = {'changed': False, 'storage_dir': self.storage_dir, 'md5_checked': self.params['check_md5']}
        if not registry.files_on_disk(self.config):
            result.update(audited=False, healthy=True,
                          msg='The DICOM files are stored in the database (EnableStorage): there is no storage '
                              'folder to audit.')
            return result
        check_identity(self.rest, self.config)
        cutoff = time.time() - self.params['min_age']
        with private_ledger(self.module.tmpdir, TABLES) as ledger:
            on_disk = list_disk(ledger, self.storage_dir)
            referenced = self.read_index(result, ledger)
            on_disk += add_late_files(ledger, self.storage_dir)
            orphans, young, missing, damaged = classify(ledger, cutoff, self.params['check_md5'], self.storage_dir)
        # Read after the listing: a file queued before it was listed is counted, whatever was deleted since.
        pending = self.rest.pending_deletions()
        missing, damaged = self.confirmed(missing), self.confirmed(damaged)
        broken = missing + damaged
        repaired, unrepaired = [], [entry['uuid'] for entry in broken]
        result.update(audited=True, referenced=referenced, on_disk=on_disk, young_unreferenced=young,
                      pending_deletions=pending, orphan_bytes=sum(orphan['size'] for orphan in orphans), removed=0,
                      quarantined=0, quarantine_path=None)
        cleaning = self.params['orphans'] != 'report' and bool(orphans)
        repairing = self.params['repair'] and bool(broken)
        changing = (cleaning or repairing) and not self.module.check_mode
        with orthanc_lock(self.config.identity, 'audit') if changing else nullcontext():
            if repairing:
                repaired, unrepaired = self.repair(broken)
                result['changed'] = bool(repaired)
            refusal = cleanup_refusal(self.storage_dir, self.config.path, referenced, unrepaired,
                                      pending) if cleaning else None
            if cleaning and not refusal:
                result['changed'] = True
                if not self.module.check_mode:
                    result.update(self.clean(orphans))
        # Lists cut to list_limit (a lost storage folder would make a million entries), counts whole.
        for name, entries in (('orphans', orphans), ('missing', missing), ('damaged', damaged),
                              ('repaired', repaired), ('unrepaired', unrepaired)):
            result[name] = entries[:self.params['list_limit']]
            result[name + '_count'] = len(entries)
        # Orphans that may all be files queued for deletion are no sign of trouble.
        result['healthy'] = not unrepaired and (not orphans or self.params['orphans'] != 'report'
                                                or pending >= len(orphans))
        result['duration_seconds'] = round(time.monotonic() - started, 3)
        if refusal:
            raise OrthancOpsError('The %d orphan(s) were left in place: %s' % (len(orphans), refusal), **result)
        return result

    def read_index(self, result, ledger):
        """Record every attachment the index references in ``ledger``; return how many there are."""
        def hold(rows):
            return ledger.fill('referenced', rows)
        if self.backend is None:
            self.module.warn('The index is read over the REST API, which is slower: %s' % self.direct_refusal)
            result.update(index_read='rest', pause_seconds=0.0)
            return hold((uuid, entry['size'], entry['md5'], entry['resource'], entry['attachment'])
                        for uuid, entry in self.rest.attachments(self.params['threads']).items())
        result.update(index_read='direct', pause_seconds=0.0)

        @contextmanager
        def frozen():
            with _service.frozen(self.config.host_http_port, self.config.container) as pause:
                yield
            result['pause_seconds'] = round(pause.seconds, 3)
        return self.backend.referenced(os.path.join(self.module.tmpdir, 'index'), frozen, hold)

    def confirmed(self, entries):
        """Those of the missing or damaged ``entries`` whose attachment Orthanc still has (over REST: a
        resource deleted since the index was read has taken its file with it)."""
        return [entry for entry in entries
                if self.rest.read('/%s/attachments/%s/info' % (entry['resource'], entry['attachment']))]

    def clean(self, orphans):
        """Move the orphans to ``<quarantine>/<audit id>/`` (with a list of them), or delete them."""
        # Each orphan is reached through its folder's descriptor, the folders through no link: the Orthanc user may
        # swap a folder of the storage for a link at any time.
        deleting = self.params['orphans'] == 'delete'
        target = os.path.join(self.quarantine, self.audit_id)
        moved = []
        for orphan in orphans:
            relative = relative_path(orphan['uuid'])
            folder, name = os.path.split(relative)
            try:
                source = folder_beneath(self.storage_dir, folder)
            except OSError:     # gone, or a folder on the way is now a link: left alone
                continue
            try:
                if deleting:
                    os.unlink(name, dir_fd=source)
                else:
                    self._quarantine_from(source, relative)
            except FileNotFoundError:
                continue
            finally:
                os.close(source)
            moved.append(dict(orphan, quarantined_to=None if deleting else os.path.join(target, relative)))
        if deleting:
            return {'removed': len(moved)}
        if not moved:
            return {}
        with create_file(ORPHANS_LIST, dir_fd=self._quarantine_folder()) as handle:
            handle.write(json.dumps({'storage_dir': self.storage_dir, 'orphans': moved}, indent=1).encode())
        return {'quarantined': len(moved), 'quarantine_path': target}

    def _quarantine_folder(self):
        """A descriptor of ``<quarantine>/<audit id>``, made for this audit, 0700. The quarantine usually sits beside
        the storage, where the Orthanc user may write: it is reached through no link and must be this user's own and
        writable by no one else, or nothing is moved there."""
        if self._quarantined is None:
            parent, name = os.path.split(self.quarantine.rstrip('/'))
            parent_fd = os.open(parent or '/', os.O_RDONLY | os.O_DIRECTORY)
            try:
                try:
                    quarantine = private_folder(name, parent_fd)
                except FileExistsError:
                    quarantine = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
            except OSError as exc:
                raise OrthancOpsError('The quarantine folder %s cannot be used (%s): it must be a folder, not a '
                                      'symbolic link. Nothing was moved; remove it or choose another quarantine.'
                                      % (self.quarantine, exc.strerror or exc))
            finally:
                os.close(parent_fd)
            try:
                info = os.fstat(quarantine)
                if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                    raise OrthancOpsError('The quarantine folder %s belongs to uid %d with mode %o: another account '
                                          'could steer what is moved into it. Nothing was moved; make it this '
                                          "account's own and writable by no one else (chown, chmod 0700), or choose "
                                          'another quarantine.' % (self.quarantine, info.st_uid, info.st_mode & 0o777))
                self._quarantined = private_folder(self.audit_id, quarantine)
            finally:
                os.close(quarantine)
        return self._quarantined

    def _quarantine_from(self, source, relative):
        """Move the storage file ``relative`` (its folder open as ``source``) to the same place in the quarantine:
        renamed between the descriptors, or copied and removed when the quarantine is on another file system."""
        folder, name = os.path.split(relative)
        destination = folder_beneath(fd_path(self._quarantine_folder()), folder, DIR_MODE)
        try:
            os.rename(name, name, src_dir_fd=source, dst_dir_fd=destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_file(name, name, beneath=fd_path(source), hashed=False, dir_fd=destination)
            os.unlink(name, dir_fd=source)
        finally:
            os.close(destination)

    def repair(self, broken):
        """Put back, from the repository's backups, the files Orthanc references that are missing or damaged."""
        repository = Repository.from_params(self.module)
        wanted = dict((entry['uuid'], entry) for entry in broken)
        sources = sources_in(repository, wanted)
        repaired = sorted(sources)
        linked = [folder for folder in sorted(set(os.path.dirname(relative_path(uuid)) for uuid in repaired))
                  if linked_on_the_way(self.storage_dir, folder)]
        if linked:
            raise OrthancOpsError('Nothing was put back: in the storage %s, a folder on the way to the files to repair is '
                                  'a symbolic link, which a repair never follows (%s). Replace each link by the folder '
                                  'it stands for, then audit again.' % (self.storage_dir, ', '.join(linked[:PROBLEMS_SHOWN])))
        if not self.module.check_mode:
            owner = os.stat(self.storage_dir)
            for uuid in repaired:
                self.put_back(uuid, sources[uuid], wanted[uuid]['md5'], owner)
        return repaired, sorted(entry['uuid'] for entry in broken if entry['uuid'] not in sources)

    def put_back(self, uuid, source, md5, owner):
        """Copy a backed-up file (``source``: backup folder, path in it, read through no link) into the storage
        under a temporary name, check it, then rename it into place; its folder is reached through no link, and
        the folders missing are made like the storage's (``owner``: its stat), so Orthanc can write there again.
        A damaged file is first kept in the quarantine folder."""
        relative = relative_path(uuid)
        folder, name = os.path.split(relative)
        try:
            folder_fd = folder_beneath(self.storage_dir, folder, owner.st_mode & 0o777, (owner.st_uid, owner.st_gid))
        except OSError as exc:
            raise OrthancOpsError('Cannot put back %s: the folder %s of the storage %s cannot be used (%s); a repair '
                                  'never follows a symbolic link there.' % (uuid, folder, self.storage_dir,
                                                                            exc.strerror or exc))
        temporary = name + '.orthanc-ops-repair'
        try:
            if exists_in(folder_fd, name):
                kept = folder_beneath(fd_path(self._quarantine_folder()), 'damaged/' + folder, DIR_MODE)
                try:
                    copy_file(name, name, beneath=fd_path(folder_fd), dir_fd=kept)
                finally:
                    os.close(kept)
            if copy_file(source[1], temporary, mode=0o644, beneath=source[0], owner=(owner.st_uid, owner.st_gid),
                         dir_fd=folder_fd)[1] != md5:
                raise OrthancOpsError('The copy of %s in the backup %s does not have the MD5 Orthanc recorded; verify '
                                      'that backup.' % source[::-1])
            os.rename(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        finally:
            if exists_in(folder_fd, temporary):
                os.unlink(temporary, dir_fd=folder_fd)
            os.close(folder_fd)


def exists_in(folder_fd, name):
    try:
        os.lstat(name, dir_fd=folder_fd)
    except FileNotFoundError:
        return False
    return True


def linked_on_the_way(root, folder):
    """Whether a folder on the way from ``root`` to ``root/folder`` (a relative path) is a symbolic link."""
    parts = folder.split(os.sep)
    return any(os.path.islink(os.path.join(root, *parts[:depth])) for depth in range(1, len(parts) + 1))


def main(module):
    exit_with(module, lambda: Audit(module).run())
