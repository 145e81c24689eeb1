#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_backup_repository
short_description: List the backups of an Orthanc instance in a repository
version_added: 0.1.0
description:
  - Lists the complete backups of one instance in a repository, oldest first, and the C(.partial) folders of
    backups or copies in progress or interrupted. It needs no Orthanc, so it runs on any host that holds a
    repository (a backup host, or the controller).
  - With O(create=true), creates the instance's folder when it is missing, ready to receive a copy.
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc.REPOSITORY
  - orthanc_ops.backup.attributes
options:
  repository:
    required: true
  create:
    description: Create C(<repository>/<instance>) when it is missing.
    type: bool
    default: false
  history_days:
    description: Return in RV(history) the backup runs of the last this many days; V(0) for none.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details: Lists the backups; a missing folder is reported as to be created but not created.
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_backup_verify
  - module: orthanc_ops.backup.orthanc_backup_prune
'''

EXAMPLES = r'''
- name: List the backups of pacs1 on the backup host
  orthanc_ops.backup.orthanc_backup_repository:
    repository: /srv/orthanc-backups
    instance: pacs1
  delegate_to: backup1.example.org
  register: pacs1_backups

- name: Get ready to receive a copy, and learn which copy to hard-link unchanged files to
  orthanc_ops.backup.orthanc_backup_repository:
    repository: /srv/orthanc-backups
    instance: pacs1
    create: true
'''

RETURN = r'''
path:
  description: Folder of the instance in the repository.
  returned: success
  type: str
  sample: /srv/orthanc-backups/pacs1
backups:
  description: Ids of the complete backups, oldest first (empty when the folder does not exist).
  returned: success
  type: list
  elements: str
  sample: ["20261126T230000Z", "20261127T231045Z"]
latest:
  description: Id of the newest complete backup, or null when there is none.
  returned: success
  type: str
  sample: 20261127T231045Z
partials:
  description: Folders of backups or copies in progress or interrupted (C(<id>.partial)); the next prune removes them.
  returned: success
  type: list
  elements: str
last_drill:
  description: The last drill of a backup of the instance in this repository (see M(orthanc_ops.backup.orthanc_drill)), or null.
  returned: success
  type: dict
  contains:
    backup_id:
      description: Backup drilled.
      type: str
    drilled_at:
      description: When, UTC, as C(YYYYMMDDTHHMMSSZ).
      type: str
    passed:
      description: Whether it passed.
      type: bool
    rto_seconds:
      description: Seconds to a serving Orthanc; null when it never served.
      type: float
    reason:
      description: Why it failed; empty when it passed.
      type: str
last_passed_drill:
  description: The last drill that passed, as RV(last_drill), or null.
  returned: success
  type: dict
history:
  description:
    - The backup runs of the instance of the last O(history_days) days, oldest first, as
      M(orthanc_ops.backup.orthanc_backup) keeps them in C(<repository>/<instance>/.runs.json) (the last 400 runs,
      failed ones included); empty when O(history_days) is V(0).
  returned: success
  type: list
  elements: dict
  contains:
    started:
      description: When the run started, UTC, as C(YYYYMMDDTHHMMSSZ).
      type: str
    status:
      description: V(complete), V(incomplete) (files were missing from the live storage) or V(failed).
      type: str
    backup_id:
      description: The backup the run made; absent for a failed run.
      type: str
    duration_seconds:
      description: How long the run took.
      type: float
    pause_seconds:
      description: How long Orthanc was frozen or stopped.
      type: float
    bytes:
      description: Size of the backup.
      type: int
    new_bytes:
      description: Bytes copied (not linked from the backup before).
      type: int
    error:
      description: Why a failed run failed (the first 300 characters).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _catalog
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import repository_argument_spec


def main():
    argument_spec = repository_argument_spec(required=True)
    argument_spec.update(create=dict(type='bool', default=False), history_days=dict(type='int', default=0))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _catalog.main(module)


if __name__ == '__main__':
    main()
