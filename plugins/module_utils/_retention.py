# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which backups a retention policy keeps (restic's rules: keep-last, -daily, -weekly, -monthly)."""

from __future__ import annotations

from datetime import datetime

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_FORMAT

POLICY = ('keep_last', 'keep_daily', 'keep_weekly', 'keep_monthly')

PERIODS = (
    ('daily', lambda moment: moment.strftime('%Y-%m-%d')),
    ('weekly', lambda moment: '%d-W%02d' % moment.isocalendar()[:2]),
    ('monthly', lambda moment: moment.strftime('%Y-%m')),
)


def policy(params):
    """The keep_* options of a module's ``params``, checked: a policy that removes nothing by mistake is
    refused before anything is removed."""
    values = dict((name, params[name]) for name in POLICY)
    if any(value < 0 for value in values.values()):
        raise OrthancOpsError('keep_* options cannot be negative.')
    if not any(values.values()):
        # As restic's forget: no policy removes nothing rather than everything but the newest.
        raise OrthancOpsError('No retention policy was given: set at least one of %s (keep_last: 1 keeps only the '
                              'newest backup). Nothing was removed.' % ', '.join(POLICY))
    return values


def kept(backup_ids, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0):
    """{backup_id: [reasons]} of the backups to keep; the newest is always kept.

    keep_last keeps the n newest; keep_daily (weekly, monthly) keeps the newest backup of each of
    the n newest days (ISO weeks, months) that have one.
    """
    newest_first = sorted(backup_ids, reverse=True)
    reasons = dict((backup_id, []) for backup_id in newest_first)
    for backup_id in newest_first[:keep_last]:
        reasons[backup_id].append('last')
    limits = {'daily': keep_daily, 'weekly': keep_weekly, 'monthly': keep_monthly}
    for name, period_of in PERIODS:
        seen = []
        for backup_id in newest_first:
            period = period_of(datetime.strptime(backup_id, ID_FORMAT))
            if period not in seen and len(seen) < limits[name]:
                seen.append(period)
                reasons[backup_id].append(name)
    if newest_first and not reasons[newest_first[0]]:
        reasons[newest_first[0]].append('newest')
    return dict((backup_id, why) for backup_id, why in reasons.items() if why)
