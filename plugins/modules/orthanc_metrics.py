#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: orthanc_metrics
short_description: Write Prometheus metrics of an Orthanc backup, push, audit or drill for node_exporter
version_added: 0.3.0
description:
  - Writes O(metrics) as gauges named C(orthanc_<kind>_<name>), labelled C(orthanc_instance="<instance>"), into
    C(<metrics_dir>/orthanc_<kind>_<instance>.prom), the format of node_exporter's textfile collector.
  - The file is replaced atomically, written under a name the collector does not read and renamed once synced, so
    a scrape never sees half of it; it is rewritten only when its content changes.
  - The label is not C(instance), which Prometheus sets to the scraped target (and would rename C(exported_instance)).
  - The roles call it when C(orthanc_backup_metrics_dir) is set (backup, off-site push, audit, drill).
author:
  - orthanc_ops developers (@orthanc-ops)
extends_documentation_fragment:
  - orthanc_ops.backup.attributes
options:
  metrics_dir:
    description: Folder that node_exporter's textfile collector reads (C(--collector.textfile.directory)).
    type: path
    required: true
  kind:
    description: What the metrics describe; part of the metric and file names.
    type: str
    required: true
    choices: [backup, offsite, audit, drill]
  instance:
    description: Name of the Orthanc (as in the repository), the value of the C(orthanc_instance) label.
    type: str
    required: true
  metrics:
    description:
      - "Metric names (lower case letters, digits and C(_)) and values: numbers, booleans (1 or 0), or times (a backup
        id C(YYYYMMDDTHHMMSSZ) or an ISO 8601 date-time, UTC unless it says otherwise) written as seconds since the
        epoch. A null value leaves the metric out."
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    details: Says whether the file would change, and returns its text; writes nothing.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Tell the monitoring how the backup went
  orthanc_ops.backup.orthanc_metrics:
    metrics_dir: /var/lib/prometheus/node-exporter
    kind: backup
    instance: pacs1
    metrics:
      last_run_timestamp_seconds: "{{ now(utc=true).isoformat() }}"
      last_success_timestamp_seconds: "{{ backup.backup_id }}"
      success: true
      duration_seconds: "{{ backup.duration_seconds }}"
'''

RETURN = r'''
path:
  description: The metrics file.
  returned: success
  type: str
  sample: /var/lib/prometheus/node-exporter/orthanc_backup_pacs1.prom
text:
  description: Its content.
  returned: success
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _metrics


def main():
    module = AnsibleModule(argument_spec=dict(
        metrics_dir=dict(type='path', required=True),
        kind=dict(type='str', required=True, choices=list(_metrics.KINDS)),
        instance=dict(type='str', required=True),
        metrics=dict(type='dict', required=True),
    ), supports_check_mode=True)
    _metrics.main(module)


if __name__ == '__main__':
    main()
