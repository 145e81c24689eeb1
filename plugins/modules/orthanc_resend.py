#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_resend
short_description: After a restore, fetch back from the modalities the recent studies Orthanc lacks
version_added: 0.1.0
description:
  - A restore brings Orthanc back to the time of its backup; the studies received since are still on the
    modalities (or the PACS) that sent them. This module asks each modality, through Orthanc (C-FIND), for its
    studies since O(since) with their number of instances, and retrieves (C-MOVE to Orthanc's own AET) every
    study Orthanc lacks or holds fewer instances of.
  - The query starts one day before O(since), because a study date is the modality's local date while a backup
    id is in UTC.
  - A modality that cannot be reached, or a study that fails, does not stop the others; the task fails at the end
    and says which.
  - The modalities must be declared in Orthanc (C(DicomModalities) or the REST API), and must know Orthanc's AET
    as a move destination. The Orthanc Book recommends C(OverwriteInstances=true) for a resend; the module warns
    when it is off (V(false), or from Orthanc 1.13 V(Never); V(Always) and V(IfChanged) replace what changed).
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.orthanc
  - orthanc_ops.backup.attributes
options:
  since:
    description:
      - Resend the studies dated from this day on, a date (C(YYYYMMDD) or C(YYYY-MM-DD)), an ISO 8601 date-time
        (C(2026-11-28T12:00:36Z); only its date counts) or the id of the backup that was restored
        (C(YYYYMMDDTHHMMSSZ)).
    type: str
    required: true
  until:
    description:
      - Last study date to resend (C(YYYYMMDD) or C(YYYY-MM-DD)). Defaults to no limit.
    type: str
  modalities:
    description:
      - Names of the modalities to ask, as Orthanc knows them. Defaults to every modality Orthanc knows.
    type: list
    elements: str
    default: []
  only_incomplete:
    description:
      - Retrieve only the studies Orthanc lacks or holds fewer instances of than the modality reports;
        V(false) retrieves every study found.
    type: bool
    default: true
  target_aet:
    description:
      - AET the modalities send the studies to. Defaults to Orthanc's own C(DicomAet).
    type: str
  timeout:
    description:
      - Seconds to wait for one query or one study's retrieval.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    details: Queries the modalities and returns the studies it would retrieve (action C(would retrieve)).
  diff_mode:
    support: none
seealso:
  - module: orthanc_ops.backup.orthanc_restore
  - module: orthanc_ops.backup.orthanc_audit
'''

EXAMPLES = r'''
- name: Restore the latest backup
  orthanc_ops.backup.orthanc_restore:
    repository: /var/backups/orthanc
  register: restore

- name: Fetch back what the modalities sent since that backup
  orthanc_ops.backup.orthanc_resend:
    since: "{{ restore.backup_id }}"

- name: Ask two modalities for the studies of one week, without retrieving anything
  orthanc_ops.backup.orthanc_resend:
    since: 2026-11-20
    until: 2026-11-27
    modalities: [ct1, mr2]
  check_mode: true
'''

RETURN = r'''
study_date_range:
  description: The StudyDate range asked for.
  returned: always when the modalities could be listed
  type: str
  sample: 20261126-
target_aet:
  description: The AET the studies were sent to.
  returned: always when the modalities could be listed
  type: str
  sample: ORTHANC
studies:
  description:
    - One entry per study a modality reported, with C(modality), C(study_instance_uid), C(patient_id),
      C(study_date), C(remote_instances) (as the modality counts them; null when it does not say),
      C(local_instances) (held by Orthanc before), C(action) (V(complete), V(would retrieve), V(retrieved) or
      V(failed)), and after a retrieval C(local_instances_after) (and C(error) when it failed).
  returned: always when the modalities could be listed
  type: list
  elements: dict
retrieved:
  description: Number of studies retrieved.
  returned: always when the modalities could be listed
  type: int
instances_received:
  description: How many more instances Orthanc holds than before.
  returned: always when the modalities could be listed
  type: int
failed_modalities:
  description: Modalities that could not be queried or whose studies could not all be retrieved, with the reason.
  returned: always when the modalities could be listed
  type: dict
duration_seconds:
  description: Seconds the resend took.
  returned: always when the modalities could be listed
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _resend
from ansible_collections.orthanc_ops.backup.plugins.module_utils._args import orthanc_argument_spec


def main():
    argument_spec = orthanc_argument_spec()
    argument_spec.update(
        since=dict(type='str', required=True),
        until=dict(type='str'),
        modalities=dict(type='list', elements='str', default=[]),
        only_incomplete=dict(type='bool', default=True),
        target_aet=dict(type='str'),
        timeout=dict(type='int', default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    _resend.main(module)


if __name__ == '__main__':
    main()
