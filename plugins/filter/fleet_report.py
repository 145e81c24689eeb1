# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.orthanc_ops.backup.plugins.plugin_utils._fleet_report import build


def fleet_report(outcomes, rpo_hours=26, drill_max_age_days=0, history_days=0):
    """The fleet report of the outcomes the backup role recorded ({host: outcome or null}), hosts past the RPO
    and failed first; rpo_hours and drill_max_age_days mark the hosts whose last good backup or drill is too old,
    history_days is the window of each host's runs drawn."""
    if not isinstance(outcomes, Mapping) or not all(
            outcome is None or isinstance(outcome, Mapping) and 'status' in outcome for outcome in outcomes.values()):
        raise AnsibleFilterError('fleet_report expects {host: outcome or null}, with the outcomes the backup role '
                                 'records; got %r.' % (outcomes,))
    try:
        rpo = float(rpo_hours)
    except (TypeError, ValueError):
        raise AnsibleFilterError('fleet_report: rpo_hours must be a number of hours, not %r.' % (rpo_hours,))
    try:
        drill_days = float(drill_max_age_days)
    except (TypeError, ValueError):
        raise AnsibleFilterError('fleet_report: drill_max_age_days must be a number of days, not %r.'
                                 % (drill_max_age_days,))
    try:
        days = int(history_days)
    except (TypeError, ValueError):
        raise AnsibleFilterError('fleet_report: history_days must be a number of days, not %r.' % (history_days,))
    return build(dict((host, dict(outcome) if outcome else None) for host, outcome in outcomes.items()), rpo,
                 drill_max_age_days=drill_days, history_days=days)


class FilterModule:
    """The collection's filters: fleet_report."""

    def filters(self):
        return {'fleet_report': fleet_report}
