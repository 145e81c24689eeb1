#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_recover
short_description: Bring chosen studies back from a backup into a running Orthanc
version_added: 0.3.0
description:
  - Recovers patients, studies, series or instances from a backup made by M(orthanc_ops.backup.orthanc_backup)
    into the live Orthanc while it keeps serving, for example a study deleted by mistake. Nothing live is
    stopped, locked, replaced or overwritten; instances the live Orthanc holds are left alone.
  - A throwaway Orthanc (this host's C(Orthanc) program, with this host's own plugin of the database the
    configuration uses, run as C(nobody) with no privilege but reading files) is started on the backup on a free
    loopback port (in the network of O(database_container) when it is set), with a random password, no DICOM
    server, no Lua scripts and no peers. Its index is a copy of the backup's SQLite index, or the backup's dump restored into a
    database C(<db>_sandbox_<name>) of the live database server (the O(login_user) needs the rights of
    M(orthanc_ops.backup.orthanc_restore)). Only the storage files of the chosen instances are hard-linked
    into it, each checked against the manifest's size and MD5.
  - Each chosen instance the live Orthanc lacks is read from the throwaway Orthanc, checked against the MD5
    the backup's index recorded, uploaded to the live Orthanc over REST as a modality would send it, and
    checked again there. Then the labels (Orthanc 1.12 and later) the backup's index held on the recovered
    instances, their series, studies and patients are put back on them, as they live in the index only.
  - The throwaway Orthanc, its folder C(.orthanc-sandbox-<name>) (in the instance's folder of the repository, or
    beside O(src)) and its database are removed at the end, also on failure. If the module is killed, the
    next recovery from the same folder removes them first.
  - The backup's manifest is read and its index or dump checked against the manifest's MD5 first. Only files the
    manifest lists are opened, by their listed paths and never through a link.
  - Outside check mode the Orthanc's lock and the instance's lock of the repository are held, so no backup,
    restore, audit clean-up or prune of them runs meanwhile.
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
      - A backup folder to recover from, instead of O(repository), O(instance) and O(backup).
      - The throwaway Orthanc's folder is made in its parent folder, where the backup's files are linked, when that
        folder is the module user's own and no one else can write it; else in the module's temporary folder, where
        they are copied.
    type: path
  resources:
    description:
      - Orthanc ids of patients, studies, series or instances to recover, with everything below them.
    type: list
    elements: str
    default: []
  study_instance_uids:
    description:
      - StudyInstanceUID of each study to recover. Exact values; wildcards are refused.
    type: list
    elements: str
    default: []
  patient_ids:
    description:
      - PatientID of each patient whose studies to recover. Exact values; wildcards are refused.
    type: list
    elements: str
    default: []
  accession_numbers:
    description:
      - AccessionNumber of each study to recover. Exact values; wildcards are refused.
    type: list
    elements: str
    default: []
  missing:
    description:
      - Recover every instance of the backup that the live Orthanc no longer holds.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Starts the throwaway Orthanc and lists what would come back; sends nothing.
  diff_mode:
    support: none
notes:
  - A value that matches nothing in the backup gives a warning (and is returned in RV(not_found)); when no value
    matches anything the module fails, having changed nothing.
  - The live Orthanc must run. Orthanc in a container needs the C(orthanc) package of the same version (and its
    database plugin) on the host for the throwaway Orthanc.
  - Recovered instances are new to the live Orthanc; its Lua scripts and plugins see them arrive as any upload.
seealso:
  - module: orthanc_ops.backup.orthanc_restore
  - module: orthanc_ops.backup.orthanc_resend
'''

EXAMPLES = r'''
- name: Bring back a study deleted by mistake, from the latest backup
  orthanc_ops.backup.orthanc_recover:
    repository: /var/backups/orthanc
    accession_numbers:
      - A2026112801

- name: See what a patient's recovery from a given backup would bring back
  orthanc_ops.backup.orthanc_recover:
    repository: /var/backups/orthanc
    backup: 20261127T231045Z
    patient_ids:
      - "0042317"
  check_mode: true

- name: Bring back everything the backup holds that Orthanc lost
  orthanc_ops.backup.orthanc_recover:
    src: /mnt/usb/pacs1/20261127T231045Z
    missing: true
'''

RETURN = r'''
backup_id:
  description: Id of the backup recovered from.
  returned: success
  type: str
  sample: 20261127T231045Z
recovered_from:
  description: Folder of that backup.
  returned: success
  type: str
recovered_instances:
  description: Instances uploaded to the live Orthanc (in check mode, that would be).
  returned: success
  type: int
  sample: 214
skipped_instances:
  description: Chosen instances that the live Orthanc already held, left alone.
  returned: success
  type: int
  sample: 0
recovered_labels:
  description:
    - How many labels (Orthanc 1.12 and later) the backup held on the recovered instances, their series, studies
      and patients, and that were put back on them (in check mode, would be). Orthanc keeps labels in its index
      only, so the DICOM files do not bring them back.
  returned: success
  type: int
  sample: 1
recovered_studies:
  description: The studies of the recovered instances.
  returned: success
  type: list
  elements: dict
  contains:
    ID:
      description: Orthanc id of the study.
      type: str
    StudyInstanceUID:
      description: Its StudyInstanceUID.
      type: str
    AccessionNumber:
      description: Its AccessionNumber.
      type: str
    StudyDate:
      description: Its StudyDate.
      type: str
    StudyDescription:
      description: Its StudyDescription.
      type: str
    PatientID:
      description: Its patient's PatientID.
      type: str
    instances:
      description: Instances of the study that came back.
      type: int
not_found:
  description: The values that match nothing in the backup, as C(<option> <value>).
  returned: success
  type: list
  elements: str
sandbox_start_seconds:
  description: Seconds from the start of the throwaway Orthanc until it answered.
  returned: success
  type: float
duration_seconds:
  description: Seconds the whole recovery took.
  returned: success and not check mode
  type: float
problems:
  description:
    - Instances that could not be recovered and why (a storage file missing or damaged in the backup, an MD5 that
      differs), at most 1000; the others were recovered.
  returned: when some could not be recovered
  type: list
  elements: str
problems_count:
  description: Number of problems, all of them.
  returned: when some could not be recovered
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _recover
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import sandbox_argument_spec


def main():
    argument_spec = sandbox_argument_spec()
    argument_spec.update(
        resources=dict(type='list', elements='str', default=[]),
        study_instance_uids=dict(type='list', elements='str', default=[]),
        patient_ids=dict(type='list', elements='str', default=[]),
        accession_numbers=dict(type='list', elements='str', default=[]),
        missing=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('src', 'repository')],
                           required_one_of=[('src', 'repository')])
    _recover.main(module)


if __name__ == '__main__':
    main()
