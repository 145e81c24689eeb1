#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_audit
short_description: Find and safely clean orphan, missing and damaged files in Orthanc's storage
version_added: 0.1.0
description:
  - Compares the files of Orthanc's storage folder with the attachments its index references, while
    Orthanc keeps running, for every index backend.
  - The storage folder is listed first, then the index, read directly. A SQLite index is copied while
    Orthanc is frozen for milliseconds (C(SIGSTOP)/C(SIGCONT), as O(orthanc_ops.backup.orthanc_backup#module:mode=freeze)
    does; no other process may open it while Orthanc runs); a PostgreSQL or MySQL index is read with one
    query (connection as for a backup, see the C(login_*) options). An index plugin this collection does not
    know, or a host without the database's Python driver, is read over the REST API instead, with a warning.
  - A file no attachment references is an orphan only when it is older than O(min_age), so the file of an
    instance being stored during the audit is never taken for one. A referenced file found missing or
    damaged is confirmed over the REST API, since its resource may have been deleted after the index was read.
  - A missing file is referenced but absent; a damaged file differs in size (or, with O(check_md5=true),
    in MD5) from what Orthanc recorded for it.
  - O(orphans=quarantine) moves orphans to O(quarantine) (with a list of them, so they can be put back);
    O(orphans=delete) deletes them. O(repair=true) puts back missing and damaged files from the backups of
    O(repository) (a file never changes under its uuid, so any backup holding it with Orthanc's MD5 will do);
    a damaged file is first kept in O(quarantine).
  - Before cleaning anything, checks that the Orthanc at O(url) is the one O(config) configures
    (same HTTP and DICOM ports), so a wrong URL cannot make every file look like an orphan.
  - When the DICOM files are stored in the database (C(EnableStorage)), there is no folder to audit and
    the module says so (RV(audited=false)).
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.DATABASE
  - orthanc_ops.backup.attributes
options:
  orphans:
    description:
      - What to do with orphan files. V(report) only lists them.
    type: str
    choices: [report, quarantine, delete]
    default: report
  quarantine:
    description:
      - Folder that receives quarantined orphans (in C(<quarantine>/<audit id>/xx/yy/<uuid>), with
        C(orphans.json)) and the damaged files replaced by O(repair).
      - Defaults to the storage folder's path with C(-quarantine) appended, usually on the same file system,
        so that moving a file there is a rename.
      - It is made 0700 when missing. It must be a folder of the user running the module that no one else can
        write (not a symbolic link), or nothing is moved, since it usually sits where the Orthanc user may write.
    type: path
  min_age:
    description:
      - Seconds since its last change before an unreferenced file counts as an orphan.
    type: int
    default: 3600
  check_md5:
    description:
      - Compare the MD5 of every referenced file with Orthanc's; V(false) compares sizes only and reads no data.
    type: bool
    default: false
  repair:
    description:
      - Put back missing and damaged files from the complete backups of O(instance) in O(repository), newest first.
      - Nothing is put back when a folder of the storage on the way to a file to repair is a symbolic link (a repair
        never writes through one); the module fails and names the folders.
    type: bool
    default: false
  threads:
    description:
      - Concurrent requests to the REST API when the index is listed over it.
      - Files are hashed (O(check_md5=true)) by two worker processes on a host of two cores or more once there are
        more than 1,024 of them, whatever this is.
    type: int
    default: 4
  list_limit:
    description:
      - At most this many entries in each of RV(orphans), RV(missing), RV(damaged), RV(repaired) and
        RV(unrepaired); RV(orphans_count) and the other C(_count) values count them all.
    type: int
    default: 1000
attributes:
  check_mode:
    support: full
    details: Audits as usual and returns the orphans it would clean and the files it would repair.
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_backup
  - module: orthanc_ops.backup.orthanc_resend
'''

EXAMPLES = r'''
- name: Report orphan, missing and damaged files
  orthanc_ops.backup.orthanc_audit:
    config: /etc/orthanc
  register: audit

- name: Quarantine orphans and repair missing files from the local backups
  orthanc_ops.backup.orthanc_audit:
    config: /etc/orthanc
    orphans: quarantine
    repair: true
    repository: /var/backups/orthanc
    check_md5: true
'''

RETURN = r'''
audited:
  description: Whether a storage folder was audited (false when the files are stored in the database).
  returned: always
  type: bool
healthy:
  description: No missing or damaged file is left, and no orphan unless O(orphans) cleans them.
  returned: always
  type: bool
storage_dir:
  description: The storage folder audited.
  returned: always
  type: str
  sample: /var/lib/orthanc/db-v6
referenced:
  description: Number of attachments the index references.
  returned: when audited
  type: int
on_disk:
  description: Number of attachment files in the storage folder.
  returned: when audited
  type: int
orphans:
  description: The orphans (files older than O(min_age) that no attachment references), with C(uuid), C(path), C(size).
  returned: when audited
  type: list
  elements: dict
orphans_count:
  description: Number of orphans.
  returned: when audited
  type: int
orphan_bytes:
  description: Their total size.
  returned: when audited
  type: int
young_unreferenced:
  description: Unreferenced files younger than O(min_age), left alone (an instance may be being stored).
  returned: when audited
  type: int
pending_deletions:
  description:
    - Files the DelayedDeletion plugin (Orthanc 1.12 and later) has still to delete, as its status says; 0
      without the plugin. Orthanc has removed them from its index, so they cannot be told from orphans until
      they are gone; while there are any, no orphan is moved or deleted (the audit fails and says so), and
      orphans no more numerous than them do not make RV(healthy) false.
  returned: when audited
  type: int
missing:
  description:
    - Referenced files that are absent, with C(uuid), C(size), C(md5), C(resource) (for example
      C(instances/<id>)) and C(attachment) (for example C(dicom)).
  returned: when audited
  type: list
  elements: dict
missing_count:
  description: Number of missing files.
  returned: when audited
  type: int
damaged:
  description: Referenced files of another size or MD5, with the keys of RV(missing) and C(problem).
  returned: when audited
  type: list
  elements: dict
damaged_count:
  description: Number of damaged files.
  returned: when audited
  type: int
quarantined:
  description: Number of orphans moved to RV(quarantine_path).
  returned: when audited
  type: int
quarantine_path:
  description: Folder of this audit in O(quarantine), with C(orphans.json); null when nothing was moved.
  returned: when audited
  type: str
removed:
  description: Number of orphans deleted.
  returned: when audited
  type: int
repaired:
  description: Uuids of the missing or damaged files put back from a backup (in check mode, that would be).
  returned: when audited
  type: list
  elements: str
repaired_count:
  description: Number of files repaired.
  returned: when audited
  type: int
unrepaired:
  description: Uuids of the missing or damaged files still missing or damaged.
  returned: when audited
  type: list
  elements: str
unrepaired_count:
  description: Number of files still missing or damaged.
  returned: when audited
  type: int
md5_checked:
  description: Whether MD5s were compared.
  returned: always
  type: bool
duration_seconds:
  description: Seconds the audit took.
  returned: when audited
  type: float
pause_seconds:
  description: How long Orthanc was frozen while its SQLite index was copied (0 for the other backends).
  returned: when audited
  type: float
  sample: 0.011
index_read:
  description: How the index was read, V(direct) (a frozen copy or one query) or V(rest) (over the REST API).
  returned: when audited
  type: str
  sample: direct
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _audit
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import (
    database_argument_spec, orthanc_argument_spec, repository_argument_spec)


def main():
    argument_spec = orthanc_argument_spec()
    argument_spec.update(repository_argument_spec())
    argument_spec.update(database_argument_spec())
    argument_spec.update(
        orphans=dict(type='str', default='report', choices=['report', 'quarantine', 'delete']),
        quarantine=dict(type='path'),
        min_age=dict(type='int', default=3600),
        check_md5=dict(type='bool', default=False),
        repair=dict(type='bool', default=False),
        threads=dict(type='int', default=4),
        list_limit=dict(type='int', default=1000),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('repair', True, ['repository'])])
    _audit.main(module)


if __name__ == '__main__':
    main()
