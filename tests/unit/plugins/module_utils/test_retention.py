# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from datetime import datetime, timedelta

from ansible_collections.orthanc_ops.backup.plugins.module_utils._retention import kept


def daily_ids():
    """A backup at 01:00 every day from 1 September to 27 November 2026, and one more at 13:00 on the 27th."""
    start = datetime(2026, 9, 1, 1, 0, 0)
    ids = [(start + timedelta(days=day)).strftime('%Y%m%dT%H%M%SZ') for day in range(88)]
    return ids + ['20261127T130000Z']


def test_restic_rules_over_three_months():
    keep = kept(daily_ids(), keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=3)
    assert keep == {
        '20261127T130000Z': ['last', 'daily', 'weekly', 'monthly'],
        '20261127T010000Z': ['last'],
        '20261126T010000Z': ['daily'],
        '20261125T010000Z': ['daily'],
        '20261122T010000Z': ['weekly'],     # Sunday, the newest of ISO week 47
        '20261031T010000Z': ['monthly'],
        '20260930T010000Z': ['monthly'],
    }


def test_the_newest_backup_is_always_kept():
    assert kept(daily_ids()) == {'20261127T130000Z': ['newest']}
    assert kept([]) == {}


def test_more_periods_than_backups_keeps_them_all():
    ids = ['20260101T000000Z', '20260301T000000Z']
    assert sorted(kept(ids, keep_monthly=12)) == ids
