# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.orthanc_ops.backup.plugins.plugin_utils._alert_rules import build


def alert_rules(rpo_hours, drill_max_age_days=0, max_pause_seconds=1.0, runbook_url=''):
    """Prometheus alerting rules on the collection's metrics, with the fleet report's thresholds."""
    values = {'rpo_hours': rpo_hours, 'drill_max_age_days': drill_max_age_days, 'max_pause_seconds': max_pause_seconds}
    for name, value in values.items():
        try:
            if float(value) < 0 or name == 'rpo_hours' and float(value) == 0:
                raise ValueError
        except (TypeError, ValueError):
            raise AnsibleFilterError('alert_rules: %s must be a %s number, not %r.'
                                     % (name, 'positive' if name == 'rpo_hours' else 'non-negative', value))
    return build(rpo_hours, drill_max_age_days, max_pause_seconds, runbook_url or '')


class FilterModule:
    """The collection's filters: alert_rules."""

    def filters(self):
        return {'alert_rules': alert_rules}
