#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_drill
short_description: Prove an Orthanc backup restorable by restoring it into a throwaway Orthanc
version_added: 0.3.0
description:
  - Restores a backup made by M(orthanc_ops.backup.orthanc_backup) into a throwaway Orthanc on this host (a backup
    host, or a host kept for drills), measures the time to a serving Orthanc (the RTO), checks it, and removes
    everything. No production Orthanc is involved.
  - The backup is checked against its manifest (sizes, nothing unlisted, the MD5 of the index or dump); every
    storage file is hard-linked into the throwaway Orthanc, checked against the manifest's size and MD5.
  - The throwaway Orthanc is this host's C(Orthanc) program with only this host's own plugin of the database
    O(config) uses (from C(/usr/share/orthanc/plugins), never a path a configuration names), run as C(nobody)
    through C(setpriv) with no privilege but reading files, on a free loopback port (in the network of
    O(database_container) when it is set), with a random password, no DICOM server, no Lua scripts and no
    peers. Its index is a copy of the backup's SQLite index, or the dump restored into a database
    C(<db>_sandbox_<name>) of the database server the configuration's plugin section or the login_* options name.
  - The drill passes when Orthanc starts on it, is the version that wrote the backup with the same database plugin
    versions (see O(match_versions)), its C(/statistics) hold the manifest's counts, and Orthanc confirms the MD5 of
    O(check_instances) instances chosen at random (C(verify-md5), the file read through the index of Orthanc).
  - The drill's date, result, RTO and reason are kept in C(<repository>/<instance>/.drills.json) (the last drill
    and the last passed one), which M(orthanc_ops.backup.orthanc_backup_repository) returns for the fleet report.
  - A backup that fails its drill fails the task, with the reason.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.orthanc.BACKUP
  - orthanc_ops.backup.orthanc.DATABASE
  - orthanc_ops.backup.orthanc.DUMP
  - orthanc_ops.backup.attributes
options:
  src:
    description:
      - A backup folder to drill, instead of O(repository), O(instance) and O(backup); nothing is recorded.
      - The throwaway Orthanc's folder is made in its parent folder, where the backup's files are linked, when that
        folder is the module user's own and no one else can write it; else in the module's temporary folder, where
        they are copied.
    type: path
  check_instances:
    description:
      - How many instances, chosen at random, Orthanc checks the MD5 of; V(0) for all of them.
      - Every storage file is already checked against the manifest as it is linked; Orthanc's check proves that its
        index agrees, which a sample shows (a mismatch in 1% of the instances escapes 1000 samples with a probability
        of 4 in 100,000) in seconds rather than a second full read.
    type: int
    default: 1000
  match_versions:
    description:
      - Require the Orthanc of this host, and its database plugins, to be the versions that wrote the backup, as the
        host that would restore it runs them. When false, only older ones fail the drill (they could not read it).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reads the manifest and says what would be drilled; starts nothing.
  diff_mode:
    support: none
notes:
  - O(url), O(url_username), O(url_password) and O(validate_certs) are not used; a drill talks only to its
    throwaway Orthanc.
  - The host needs the C(orthanc) package (with C(orthanc-postgresql) or C(orthanc-mysql) and a database server for
    those backups), of a version at least that of the backup.
seealso:
  - module: orthanc_ops.backup.orthanc_backup_verify
  - module: orthanc_ops.backup.orthanc_recover
'''

EXAMPLES = r'''
- name: Drill the latest backup of pacs1 on the backup host
  orthanc_ops.backup.orthanc_drill:
    repository: /srv/orthanc-backups
    instance: pacs1
  delegate_to: backup1.example.org

- name: Drill a PostgreSQL backup against the drill host's own database server, checking every instance
  orthanc_ops.backup.orthanc_drill:
    repository: /srv/orthanc-backups
    instance: pacs2
    login_host: 127.0.0.1
    login_user: drill
    login_password: "{{ vault_drill_db_password }}"
    check_instances: 0
'''

RETURN = r'''
backup_id:
  description: Id of the backup drilled.
  returned: success and not check mode, or a failed drill
  type: str
  sample: 20261127T231045Z
drilled_from:
  description: Folder of that backup.
  returned: success and not check mode, or a failed drill
  type: str
drilled_at:
  description: When the drill started, UTC, as C(YYYYMMDDTHHMMSSZ).
  returned: success and not check mode, or a failed drill
  type: str
passed:
  description: Whether the backup passed its drill.
  returned: success and not check mode, or a failed drill
  type: bool
rto_seconds:
  description: Seconds from the start of the drill (the backup's check) until the throwaway Orthanc served; null when it never did.
  returned: success and not check mode, or a failed drill
  type: float
  sample: 4.2
orthanc_version:
  description: Version of the throwaway Orthanc.
  returned: success and not check mode, or a failed drill that started it
  type: str
statistics:
  description: The throwaway Orthanc's C(/statistics).
  returned: success and not check mode, or a failed drill that started it
  type: dict
checked_instances:
  description: Instances whose MD5 Orthanc checked.
  returned: success and not check mode, or a failed drill
  type: int
last_passed_at:
  description: When the last drill that passed (this one, or an earlier one) started; null when none did.
  returned: success and not check mode, or a failed drill, with O(repository)
  type: str
reason:
  description: Why the drill failed (its first problems); empty when it passed.
  returned: success and not check mode, or a failed drill
  type: str
problems:
  description: Every problem found, at most 1000.
  returned: success and not check mode, or a failed drill
  type: list
  elements: str
problems_count:
  description: Number of problems found, all of them.
  returned: success and not check mode, or a failed drill
  type: int
plan:
  description: In check mode, the backup that would be drilled.
  returned: check mode
  type: dict
  contains:
    backup_id:
      description: Its id.
      type: str
    drilled_from:
      description: Its folder.
      type: str
    index_backend:
      description: Its index backend.
      type: str
    files:
      description: Files in the backup.
      type: int
    bytes:
      description: Bytes in the backup.
      type: int
    counts:
      description: Resources the backup holds, per kind.
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _drill
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import sandbox_argument_spec


def main():
    argument_spec = sandbox_argument_spec()
    argument_spec.update(
        check_instances=dict(type='int', default=1000),
        match_versions=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('src', 'repository')],
                           required_one_of=[('src', 'repository')])
    _drill.main(module)


if __name__ == '__main__':
    main()
