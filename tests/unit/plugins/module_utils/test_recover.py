# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._recover import check_selectors

STUDY = '27f7126f-4f66f19a-a1a2e8c1-3a5c8b3e-0f7b2f1d'


def params(**chosen):
    values = dict(resources=[], study_instance_uids=[], patient_ids=[], accession_numbers=[], missing=False)
    values.update(chosen)
    return values


def test_selectors_are_kept_in_order():
    assert check_selectors(params(resources=[STUDY], patient_ids=['0042'], accession_numbers=['A1', ' A 2 '])) == [
        ('resources', STUDY), ('patient_ids', '0042'), ('accession_numbers', 'A1'), ('accession_numbers', 'A 2')]
    assert check_selectors(params(missing=True)) == []


@pytest.mark.parametrize('resource', [
    '../../tools/shutdown', STUDY + '/../../system', STUDY.upper(), STUDY[:-1], '', STUDY + '/'])
def test_a_resource_that_is_not_an_orthanc_id_is_refused(resource):
    with pytest.raises(OrthancOpsError, match='is not an Orthanc id'):
        check_selectors(params(resources=[resource]))


@pytest.mark.parametrize('option', ['study_instance_uids', 'patient_ids', 'accession_numbers'])
@pytest.mark.parametrize('value', ['*', 'A*', 'P00?1', 'A1\\A2', '', '   '])
def test_a_value_that_would_match_more_than_itself_is_refused(option, value):
    with pytest.raises(OrthancOpsError, match='empty or holds a wildcard'):
        check_selectors(params(**{option: [value]}))


def test_nothing_chosen_is_refused():
    with pytest.raises(OrthancOpsError, match='Nothing was chosen'):
        check_selectors(params())
