# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._resend import first_study_date, needs_retrieve, overwrites


@pytest.mark.parametrize('since, first', [
    ('20261127T231045Z', '20261126'),    # a backup id, in UTC: the day before, for modalities east of UTC
    ('20261127', '20261126'),
    ('2026-03-01', '20260228'),
    ('20250101', '20241231'),
    ('2026-11-28T12:00:36Z', '20261127'),    # ISO 8601 date-times, as people and AWX surveys write them
    ('2026-11-28T12:00:36.250+01:00', '20261127'),
    ('2026-11-27T23:10:45', '20261126'),
    ('2026-11-28 12:00', '20261127'),
])
def test_first_study_date_is_a_day_before(since, first):
    assert first_study_date(since) == first


@pytest.mark.parametrize('since', ['', 'yesterday', '20261332', '261127', '2026-11-28T', '2026-11-28Tnoon'])
def test_bad_since_is_explained(since):
    with pytest.raises(OrthancOpsError, match='is neither a date'):
        first_study_date(since)


@pytest.mark.parametrize('remote, local, only_incomplete, fetch', [
    (4, 0, True, True),
    (4, 3, True, True),
    (4, 4, True, False),
    (4, 5, True, False),
    (None, 4, True, True),      # the modality does not count: fetch, Orthanc keeps what it has
    (4, 4, False, True),
])
def test_needs_retrieve(remote, local, only_incomplete, fetch):
    assert needs_retrieve(remote, local, only_incomplete) is fetch


@pytest.mark.parametrize('setting, expected', [
    (True, True), (False, False), ('Always', True), ('IfChanged', True), ('Never', False), ('never', False),
    (None, False),
])
def test_overwrite_instances_as_orthanc_1_13_reads_it(setting, expected):
    assert overwrites(setting) is expected
