# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._metrics import number, render


@pytest.mark.parametrize('value, expected', [
    (3, 3.0), (2.5, 2.5), ('12.25', 12.25), (True, 1.0), (False, 0.0), ('True', 1.0), ('false', 0.0),
    ('20261127T231045Z', 1795821045.0),                 # a backup id, UTC
    ('2026-11-27T23:10:45', 1795821045.0),              # a template's now(utc=true).isoformat(): UTC
    ('2026-11-27T23:10:45.500000', 1795821045.5),
    ('2026-11-28T00:10:45+01:00', 1795821045.0),
])
def test_values_are_numbers_booleans_or_times(value, expected):
    assert number('x', value) == expected


@pytest.mark.parametrize('value', ['soon', 'nan', 'inf', [], {}, float('nan')])
def test_anything_else_is_refused(value):
    with pytest.raises(OrthancOpsError, match='neither a number'):
        number('x', value)


def test_render_writes_labelled_gauges_and_leaves_nulls_out():
    text = render('backup', 'pacs"1', {'success': True, 'bytes': 10, 'downtime_seconds': None, 'files': ''})
    assert text == ('# TYPE orthanc_backup_bytes gauge\northanc_backup_bytes{orthanc_instance="pacs\\"1"} 10.0\n'
                    '# TYPE orthanc_backup_success gauge\northanc_backup_success{orthanc_instance="pacs\\"1"} 1.0\n')


@pytest.mark.parametrize('name', ['Bytes', '1x', 'a-b', 'a b', ''])
def test_a_bad_metric_name_is_refused(name):
    with pytest.raises(OrthancOpsError, match='is not a metric name'):
        render('backup', 'pacs', {name: 1})
