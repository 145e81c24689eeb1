#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_backup
short_description: Back up an Orthanc server into a repository on the host
version_added: 0.1.0
description:
  - Backs up the index, the DICOM files and the configuration of an Orthanc server into
    C(<repository>/<instance>/<backup_id>), where C(backup_id) is the UTC start time (C(YYYYMMDDTHHMMSSZ)).
  - "SQLite index (Orthanc frozen for milliseconds, or with O(mode=cold) stopped as briefly as possible):
    while Orthanc runs, the storage is snapshotted: files the previous complete backup holds are hard-linked
    from it (same uuid, same bytes), the rest is copied. Then Orthanc is frozen (or stopped), the index is
    copied, the snapshot is brought to exactly the attachments that index references, and Orthanc is
    continued (or started again) before the manifest is written."
  - "PostgreSQL index (hot backup, Orthanc keeps serving): C(pg_dump) runs inside a REPEATABLE READ snapshot
    exported by the module, which reads the attachments in that same snapshot; the storage snapshot then
    holds exactly the files that dump references (from the previous backup when Orthanc deleted one meanwhile).
    With C(EnableStorage) the files are in the dump (large objects included). O(mode=cold) stops Orthanc
    for the dump instead."
  - A backup never shares an inode with the live storage. Backup folders are mode 0700, files 0600.
  - A backup is complete only when its C(manifest.json) is written, after its listings of the size and MD5
    of every file, sorted and gzip-compressed (C(manifest-storage.bin.gz), a record of 40 bytes per storage
    file; C(manifest-files.jsonl.gz), a JSON line per other file), and the folder renamed from
    C(<backup_id>.partial). Leftover partial folders are removed by the next run.
  - What the backup knows of the files is kept in a SQLite ledger on disk, in a private folder of the
    instance's folder of the repository removed afterwards, so its memory does not grow with the number
    of files.
  - Orthanc is started again whatever fails once it was stopped. If it was not running when the
    module began, it is left stopped.
  - Two backups of the same instance cannot run at once, nor a backup and a restore or prune of the instance,
    nor a backup and a restore of the same Orthanc; the second fails at once.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.orthanc.SERVICE
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.DATABASE
  - orthanc_ops.backup.orthanc.DUMP
  - orthanc_ops.backup.attributes
options:
  repository:
    required: true
  mode:
    description:
      - V(cold) stops Orthanc while the index is copied; V(hot) keeps it serving. With SQLite, Orthanc is
        started again as soon as its index is copied, and the files that copy references are taken while it
        serves, as with V(freeze); if Orthanc deletes one of them first, it is stopped again, this time until
        its files are taken.
      - "V(freeze) (SQLite): Orthanc keeps running but every one of its threads is stopped by the kernel
        (C(SIGSTOP)) while its index files (C(index), C(index-wal)) are copied, then continued (C(SIGCONT));
        clients see a pause of milliseconds, not a refusal. The copy is what a crash at that instant would
        leave, which SQLite recovers to the last committed transaction when the index is opened
        (U(https://www.sqlite.org/atomiccommit.html), U(https://www.sqlite.org/wal.html)). The files that
        copy references are taken once Orthanc runs again (Orthanc never rewrites a file); if Orthanc deletes
        one of them first, the freeze is made again, and the third one holds Orthanc frozen until its files
        are taken. If the module dies while Orthanc is frozen, the detached watcher continues Orthanc."
      - V(auto) takes the index backend's default; SQLite defaults to V(freeze) (its torture test, 100 freezes
        under uploads and deletes, runs in CI), PostgreSQL and MySQL to V(hot). Use V(cold) for Orthanc's own
        clean shutdown. A busy Orthanc 1.10 does not finish stopping while changes come more often than every
        100 ms (its Lua event thread waits for a pause), so its service manager kills it after its stop
        timeout, which is then the outage of a cold backup.
      - With V(auto), a freeze that reaches O(max_pause) (an index too large to copy in that time) is
        continued and the backup is taken V(cold) instead, with a warning; an explicit V(freeze) fails.
    type: str
    choices: [auto, cold, hot, freeze]
    default: auto
  max_pause:
    description:
      - With O(mode=freeze) (or V(auto) for SQLite), the longest Orthanc may stay frozen, in seconds. A freeze
        that reaches it (a huge index) continues Orthanc; with O(mode=freeze) the backup then fails and is not
        counted complete, with O(mode=auto) it is taken V(cold).
    type: float
    default: 1.0
  link:
    description:
      - Hard-link files that the previous complete backup of the instance already holds instead of copying them.
    type: bool
    default: true
  include_config:
    description:
      - Copy the Orthanc configuration files into the backup (C(config/)).
    type: bool
    default: true
  allow_missing_files:
    description:
      - "By default a backup fails, and the previous backup stays the latest, when the live storage folder lacks
        files that the index references (a storage that did not mount, a wrong C(StorageDirectory), a replaced
        disk): such a backup could not restore Orthanc. An empty storage folder under an Orthanc that holds
        instances is refused before Orthanc is stopped."
      - The backup fails likewise when files it links from the previous backup have changed in the live storage
        (RV(live_changed)). Orthanc never rewrites a file, so a storage encrypted in place by ransomware, or a
        failing disk, does not become the newest backup and lets retention remove none of the earlier ones.
      - V(true) backs up a damaged Orthanc knowingly; the missing files are taken from an earlier backup where
        one holds them, counted in RV(live_missing_count) and named in the manifest; changed files are kept as the
        previous backup holds them.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Returns a plan (backend, files and bytes to copy and to link, previous backup) and stops or writes nothing.
  diff_mode:
    support: none
notes:
  - Files on disk that the index does not reference (orphans) are not backed up; they are counted.
  - Files whose size or MD5 differ from what Orthanc recorded are backed up as they are, listed and warned about.
seealso:
  - module: orthanc_ops.backup.orthanc_restore
  - module: orthanc_ops.backup.orthanc_info
'''

EXAMPLES = r'''
- name: Back up the Debian-packaged Orthanc
  orthanc_ops.backup.orthanc_backup:
    repository: /var/backups/orthanc
  register: backup

- name: Back up an Orthanc started by custom commands
  orthanc_ops.backup.orthanc_backup:
    config: /srv/orthanc/config
    repository: /srv/backups
    instance: router-site-a
    service_manager: command
    stop_command: start-stop-daemon --stop --retry TERM/30/KILL/5 --pidfile /run/orthanc-a.pid --remove-pidfile
    start_command: >-
      start-stop-daemon --start --background --make-pidfile --pidfile /run/orthanc-a.pid
      --exec /usr/sbin/Orthanc -- /srv/orthanc/config

- name: Show what a backup would copy
  orthanc_ops.backup.orthanc_backup:
    repository: /var/backups/orthanc
  check_mode: true
  register: plan
'''

RETURN = r'''
backup_id:
  description: Id of the new backup (UTC start time).
  returned: success and not check mode
  type: str
  sample: 20261127T231045Z
path:
  description: Folder of the new backup.
  returned: success and not check mode
  type: str
  sample: /var/backups/orthanc/pacs1/20261127T231045Z
previous_backup:
  description: Id of the backup files were linked from, or null. With O(backup_key), only a backup the key
    signed is linked from.
  returned: success and not check mode
  type: str
authenticated:
  description: Whether the backup's manifest was signed with O(backup_key).
  returned: success and not check mode
  type: bool
index_backend:
  description: Index backend of the Orthanc backed up.
  returned: success and not check mode
  type: str
  sample: sqlite
storage_backend:
  description: Storage backend of the Orthanc backed up.
  returned: success and not check mode
  type: str
  sample: filesystem
downtime_seconds:
  description:
    - Seconds from the stop command until Orthanc's REST API answered again (0 if it was not stopped), summed
      over the stops when there were two (see RV(timings.stops)).
  returned: success and not check mode
  type: float
  sample: 3.1
consistent_at:
  description:
    - The instant (UTC, ISO 8601) whose state of Orthanc the backup holds, taken while Orthanc could neither
      add nor delete an attachment (stopped, frozen, or its attachment table locked).
    - Every instance stored before it is in the backup, and no instance deleted before it.
  returned: success and not check mode
  type: str
  sample: '2026-11-28T02:00:03.517204Z'
pause_seconds:
  description:
    - With O(mode=freeze), the seconds Orthanc was frozen, the longest freeze when there were several (its
      clients saw a pause, not a refusal); 0 otherwise.
    - Returned too when a freeze went over O(max_pause) and the backup failed.
  returned: success and not check mode
  type: float
  sample: 0.012
duration_seconds:
  description: Seconds the whole backup took, its manifest written and the backup renamed into place included.
  returned: success and not check mode
  type: float
files:
  description: Number of files in the backup (configuration, index and storage).
  returned: success and not check mode
  type: int
bytes_copied:
  description: Bytes copied into the backup.
  returned: success and not check mode
  type: int
bytes_linked:
  description: Bytes hard-linked from the previous backup.
  returned: success and not check mode
  type: int
orphans_skipped:
  description: Files in the storage that the index does not reference, left out of the backup.
  returned: success and not check mode
  type: int
missing_attachments:
  description: Uuids the index references that are not in the storage.
  returned: success and not check mode
  type: list
  elements: str
live_missing_count:
  description:
    - Number of files the index references that the live storage folder does not hold as regular files
      (symbolic links are never followed). Non-zero only with O(allow_missing_files=true); otherwise the
      backup fails and returns this count and RV(live_missing).
  returned: success and not check mode, or when the backup failed for missing files
  type: int
live_missing:
  description: The first 100 of those uuids.
  returned: success and not check mode, or when the backup failed for missing files
  type: list
  elements: str
md5_mismatches:
  description: Uuids whose file differs in size or MD5 from what Orthanc recorded.
  returned: success and not check mode
  type: list
  elements: str
live_checked:
  description:
    - How many files linked from the previous backup were read again, picked at random (up to 32), in the live
      storage and in the backup, to find a storage or a backup rewritten in place (Orthanc never rewrites a file,
      and a backup's files are never rewritten; ransomware does). A previous backup whose files changed is never
      linked from - the backup fails and names them (RV(backup_changed)).
  returned: success and not check mode, or when the backup failed for changed files
  type: int
live_changed:
  description:
    - Uuids of those whose live file no longer has the MD5 the previous backup holds. Empty unless
      O(allow_missing_files=true); otherwise the backup fails, the earlier backups stay as they are, and this
      names them.
  returned: success and not check mode, or when the backup failed for changed files
  type: list
  elements: str
new_bytes_jump:
  description:
    - Whether the bytes this backup copied (RV(bytes_copied)) jumped, that is more than 10 times the most any of
      the last 14 complete runs copied (with 3 runs at least), and more than a quarter of the backup. A storage
      encrypted in place fails the backup instead (RV(live_changed)); a jump is a mass change of another shape,
      most of the archive new to the backups (a mass import or re-import, someone flooding Orthanc), or an index or dump grown
      many times over.
    - The backup completes, with a warning; M(orthanc_ops.backup.orthanc_backup_prune) then keeps the backup taken
      before it (reason C(before jump)) as long as its rules keep this one, and the backup role's report names the
      host.
  returned: success and not check mode
  type: bool
backup_changed:
  description: Uuids of the files of the previous backup that no longer have the MD5 its listing holds.
  returned: when the backup failed for them
  type: list
  elements: str
counts:
  description: Resources and attachments in the backed-up index.
  returned: success and not check mode
  type: dict
  sample: {patients: 3, studies: 4, series: 8, instances: 40, attachments: 40}
timings:
  description: Seconds spent in each step.
  returned: success and not check mode
  type: dict
  contains:
    snapshot_seconds:
      description: Snapshot of the storage while Orthanc runs, flushed to disk.
      type: float
    stop_seconds:
      description: From the stop command until Orthanc is gone (REST silent, index released), summed over the stops.
      type: float
    capture_seconds:
      description:
        - Index copy and snapshot reconciliation (with Orthanc stopped or frozen for the copy), and with
          O(mode=cold) Orthanc's start.
      type: float
    downtime_seconds:
      description: From the stop command until the REST API answers again, summed over the stops.
      type: float
    stops:
      description:
        - With O(mode=cold), how many times Orthanc was stopped; 1 unless Orthanc deleted a file of the copied
          SQLite index before it was taken. Absent otherwise.
      type: int
    pause_seconds:
      description: With O(mode=freeze), how long Orthanc was frozen (the longest freeze).
      type: float
    freezes:
      description:
        - With O(mode=freeze), how many times Orthanc was frozen; 1 unless Orthanc deleted a file of the copied
          index before it was taken. Absent otherwise.
      type: int
    duration_seconds:
      description: The backup until its manifest was written (the manifest records this figure;
        RV(duration_seconds) also counts writing the manifest).
      type: float
plan:
  description: In check mode, what the backup would do.
  returned: check mode
  type: dict
  contains:
    index_backend:
      description: Index backend.
      type: str
    storage_backend:
      description: Storage backend.
      type: str
    mode:
      description: Backup mode that would be used.
      type: str
    previous_backup:
      description: Backup files would be linked from.
      type: str
    orthanc_running:
      description: Whether Orthanc runs (and so would be stopped for a cold backup).
      type: bool
    service:
      description: Service manager and the stop and start commands.
      type: dict
    files_to_copy:
      description: Storage files to copy.
      type: int
    bytes_to_copy:
      description: Bytes to copy, index and configuration included.
      type: int
    files_to_link:
      description: Storage files to hard-link from the previous backup.
      type: int
    bytes_to_link:
      description: Bytes of those files.
      type: int
    instance:
      description: Instance name in the repository.
      type: str
    repository:
      description: Folder of the instance in the repository.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _backup
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import operation_argument_spec


def main():
    argument_spec = operation_argument_spec(repository_required=True)
    argument_spec.update(
        mode=dict(type='str', default='auto', choices=['auto', 'cold', 'hot', 'freeze']),
        max_pause=dict(type='float', default=1.0),
        link=dict(type='bool', default=True),
        include_config=dict(type='bool', default=True),
        allow_missing_files=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _backup.main(module)


if __name__ == '__main__':
    main()
