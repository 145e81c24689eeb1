# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The resend phase: after a restore, fetch back from the modalities the studies Orthanc lacks.

Each modality is asked (C-FIND through Orthanc) for its studies since a date, with their number of
instances; a study Orthanc lacks, or holds fewer instances of, is retrieved (C-MOVE to Orthanc's own
AET). A modality that fails does not stop the others.
"""

from __future__ import annotations

import datetime
import json
import re
import time

from ansible_collections.orthanc_ops.backup.plugins.module_utils._context import Context
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with

DICOM_DATE = '%Y%m%d'
# A date, a backup id, or an ISO 8601 date-time (only its date counts: a day earlier is asked for anyway).
SINCE_PATTERN = re.compile(r'^(\d{4})-?(\d{2})-?(\d{2})([T ]\d{2}(:?\d{2}(:?\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$')


def _day(value, option):
    match = SINCE_PATTERN.match(value or '')
    try:
        return datetime.date(*(int(part) for part in match.groups()[:3]))
    except (AttributeError, ValueError):
        raise OrthancOpsError('%s %r is neither a date (YYYYMMDD or YYYY-MM-DD), an ISO 8601 date-time '
                              '(2026-11-28T12:00:36Z) nor a backup id (YYYYMMDDTHHMMSSZ).' % (option, value))


def first_study_date(since):
    """The first StudyDate to ask for: a day before ``since`` (a date or a backup id), because a
    StudyDate is the modality's local date and a backup id is in UTC."""
    return (_day(since, 'since') - datetime.timedelta(days=1)).strftime(DICOM_DATE)


def study_date_range(since, until):
    """The DICOM date range from ``since`` (see first_study_date) to ``until`` (a date, or open)."""
    first = first_study_date(since)
    if not until:
        return first + '-'
    last = _day(until, 'until')
    if last.strftime(DICOM_DATE) < first:
        raise OrthancOpsError('until %s is before since %s: nothing could be found.' % (until, since))
    return '%s-%s' % (first, last.strftime(DICOM_DATE))


def needs_retrieve(remote_count, local_count, only_incomplete):
    """A study is fetched when Orthanc holds fewer instances than the modality (or cannot tell)."""
    if not only_incomplete or remote_count is None:
        return True
    return local_count < remote_count


def overwrites(setting):
    """Whether Orthanc replaces an instance it holds when a modality sends it again, by its OverwriteInstances: a
    boolean up to 1.12, and from 1.13 also "Always", "IfChanged" (both replace what changed) or "Never"."""
    return setting is True or (isinstance(setting, str) and setting.lower() in ('always', 'ifchanged'))


def as_count(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Resend(Context):
    """Fetching again from the modalities the studies they hold and Orthanc lacks (or holds incompletely)."""

    def local_count(self, study_uid):
        """Instances Orthanc holds of the study (0 when it does not know it)."""
        found = self.rest.post('/tools/lookup', study_uid.encode()) if study_uid else []
        for resource in found or []:
            if resource.get('Type') == 'Study':
                return self.rest.get('/studies/%s/statistics' % resource['ID'])['CountInstances']
        return 0

    def modalities(self):
        known = self.rest.get('/modalities')
        wanted = self.params['modalities'] or known
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise OrthancOpsError('Orthanc knows no modality named %s; it knows: %s. Declare them in DicomModalities '
                                  'or fix "modalities".' % (', '.join(unknown), ', '.join(known) or 'none'))
        if not wanted:
            raise OrthancOpsError('Orthanc knows no modality to ask: declare them in DicomModalities (or through '
                                  'the REST API), or name them in "modalities".')
        return wanted

    def run(self):
        """Ask every chosen modality for its studies of the date range and have Orthanc retrieve those it lacks;
        a failing modality is reported and does not stop the others."""
        started = time.monotonic()
        date_range = study_date_range(self.params['since'], self.params['until'])
        if not overwrites(self.config.get('OverwriteInstances', False)):
            self.module.warn('OverwriteInstances is %s in the configuration: an instance Orthanc already holds is '
                             'kept as it is when a modality sends it again.'
                             % json.dumps(self.config.get('OverwriteInstances', False)))
        target = self.params['target_aet'] or self.rest.system()['DicomAet']
        before = self.rest.statistics()['CountInstances']
        studies, failed = [], {}
        for modality in self.modalities():
            try:
                studies.extend(self.resend_from(modality, date_range, target))
            except OrthancOpsError as exc:
                failed[modality] = str(exc)
        for study in studies:
            if study['action'] == 'failed':
                failed.setdefault(study['modality'], 'study %s: %s' % (study['study_instance_uid'], study['error']))
        result = {
            'changed': any(study['action'] in ('retrieved', 'would retrieve') for study in studies),
            'study_date_range': date_range,
            'target_aet': target,
            'studies': studies,
            'retrieved': sum(1 for study in studies if study['action'] == 'retrieved'),
            'instances_received': self.rest.statistics()['CountInstances'] - before,
            'failed_modalities': failed,
            'duration_seconds': round(time.monotonic() - started, 3),
        }
        if failed:
            raise OrthancOpsError('Could not resend from %s (%s). The other modalities were handled; check those '
                                  'modalities (DicomModalities, network, their AET for this Orthanc) and run again.'
                                  % (', '.join(sorted(failed)), '; '.join('%s: %s' % item for item in sorted(failed.items()))),
                                  **result)
        return result

    def resend_from(self, modality, date_range, target):
        """The studies ``modality`` holds in ``date_range``, each retrieved to ``target`` when Orthanc lacks it (or
        holds it incompletely)."""
        query = self.rest.post('/modalities/%s/query' % modality, {
            'Level': 'Study',
            'Query': {'StudyDate': date_range, 'StudyInstanceUID': '', 'PatientID': '',
                      'NumberOfStudyRelatedInstances': ''},
        }, timeout=self.params['timeout'])
        answers = self.rest.get('/queries/%s/answers?expand&simplify' % query['ID'])
        studies = []
        for index, answer in enumerate(answers):
            uid = answer.get('StudyInstanceUID')
            study = {'modality': modality, 'study_instance_uid': uid, 'patient_id': answer.get('PatientID'),
                     'study_date': answer.get('StudyDate'),
                     'remote_instances': as_count(answer.get('NumberOfStudyRelatedInstances')),
                     'local_instances': self.local_count(uid)}
            if not needs_retrieve(study['remote_instances'], study['local_instances'], self.params['only_incomplete']):
                study['action'] = 'complete'
            elif self.module.check_mode:
                study['action'] = 'would retrieve'
            else:
                try:
                    self.rest.post('/queries/%s/answers/%d/retrieve' % (query['ID'], index),
                                   {'TargetAet': target, 'Synchronous': True}, timeout=self.params['timeout'])
                    study['action'] = 'retrieved'
                except OrthancOpsError as exc:
                    study.update(action='failed', error=str(exc))
                study['local_instances_after'] = self.local_count(uid)
            studies.append(study)
        return studies


def main(module):
    exit_with(module, lambda: Resend(module).run())
