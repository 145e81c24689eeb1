# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The recover phase: bring chosen studies back from a backup into the live Orthanc while it serves.

A throwaway Orthanc on the backup (see _sandbox) finds what was chosen; every instance the live Orthanc
lacks is read from it, checked against the MD5 its index recorded, and uploaded to the live Orthanc
over REST, as a modality would send it. Nothing live is stopped, replaced or overwritten.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from contextlib import ExitStack
from urllib.parse import quote

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_KEPT, PROBLEMS_SHOWN, Findings, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._lock import orthanc_lock
from ansible_collections.orthanc_ops.backup.plugins.module_utils._phase import Phase
from ansible_collections.orthanc_ops.backup.plugins.module_utils._sandbox import Sandbox, backup_source

# Orthanc's resource ids: the SHA-1 of the DICOM identifiers, in five groups of eight hex digits.
RESOURCE_ID = re.compile(r'^[0-9a-f]{8}(-[0-9a-f]{8}){4}$')
LEVELS = ('patients', 'studies', 'series', 'instances')
# option: (level of /tools/find, DICOM tag)
FINDERS = {'study_instance_uids': ('Study', 'StudyInstanceUID'), 'patient_ids': ('Patient', 'PatientID'),
           'accession_numbers': ('Study', 'AccessionNumber')}
# Characters a C-FIND matches as patterns (wildcards, ranges, multiple values): a value holding one would
# choose more than the operator typed.
PATTERN_CHARACTERS = re.compile(r'[*?\\]')
STUDY_TAGS = ('StudyInstanceUID', 'AccessionNumber', 'StudyDate', 'StudyDescription')


def check_selectors(params):
    """The selectors of the options, each checked to choose exactly what it names: [(option, value)]."""
    chosen = []
    # Text split by commas (an AWX survey's) leaves spaces; DICOM pads its values with spaces too.
    for value in (value.strip() for value in params['resources'] or []):
        if not RESOURCE_ID.match(value):
            raise OrthancOpsError('resources: %r is not an Orthanc id (five groups of eight hex digits, as in '
                                  '/studies/<id>); nothing was changed.' % (value,))
        chosen.append(('resources', value))
    for option in FINDERS:
        for value in (value.strip() for value in params[option] or []):
            if not value or PATTERN_CHARACTERS.search(value):
                raise OrthancOpsError('%s: %r is empty or holds a wildcard (*, ?, \\), which would choose more than '
                                      'one value; give exact values. Nothing was changed.' % (option, value))
            chosen.append((option, value))
    if not chosen and not params['missing']:
        raise OrthancOpsError('Nothing was chosen: give resources, study_instance_uids, patient_ids, '
                              'accession_numbers, or missing=true.')
    return chosen


class Recover(Phase):
    """The recovery of chosen studies or patients from a backup into the running Orthanc, through a throwaway
    Orthanc started on the backup; the live Orthanc keeps serving."""

    def __init__(self, module):
        super().__init__(module)
        self.selectors = check_selectors(self.params)
        self.repository, self.folder, self.manifest, self.work_dir = backup_source(module)

    def run(self):
        """Check the running Orthanc and the backup; then find the chosen resources in a sandbox on the backup and
        send them into the live Orthanc, holding its lock and the repository's."""
        started = time.monotonic()
        self.check_target()
        if not self.rest.answers():
            raise OrthancOpsError('The Orthanc at %s does not answer: a recovery sends into the running Orthanc. '
                                  'Start it (or restore the whole backup with orthanc_restore).' % self.rest.url)
        self._check_backup()
        with ExitStack() as stack:
            if not self.module.check_mode:
                stack.enter_context(orthanc_lock(self.config.identity, 'recovery'))
                if self.repository:
                    stack.enter_context(self.repository.locked('recovery'))
            sandbox = stack.enter_context(Sandbox(self.module, self.backend, self.config, self.work_dir,
                                                  self.folder, self.manifest))
            sandbox_seconds = sandbox.start()
            chosen, not_found = self._choose(sandbox.rest)
            wanted = dict((instance, study) for instance, study in chosen.items() if not self._live_has(instance))
            result = {'backup_id': self.manifest['backup_id'], 'recovered_from': self.folder,
                      'skipped_instances': len(chosen) - len(wanted), 'not_found': not_found,
                      'sandbox_start_seconds': round(sandbox_seconds, 3)}
            if self.module.check_mode:
                result.update(changed=bool(wanted), recovered_instances=len(wanted),
                              recovered_studies=self._studies(sandbox.rest, wanted, wanted),
                              recovered_labels=len(self._labels(sandbox, wanted, wanted, planned=True)),
                              msg='check mode: %d instance(s) would be recovered' % len(wanted))
                return result
            recovered, problems = self._transfer(sandbox, wanted)
            labels = self._labels(sandbox, wanted, recovered)
            for level, resource, label in labels:
                self.rest.request('/%s/%s/labels/%s' % (level, resource, quote(label, safe='')), method='PUT')
            result.update(changed=bool(recovered), recovered_instances=len(recovered),
                          skipped_instances=result['skipped_instances'] + len(wanted) - len(recovered) - problems.count,
                          recovered_studies=self._studies(sandbox.rest, wanted, recovered),
                          recovered_labels=len(labels))
        result['duration_seconds'] = round(time.monotonic() - started, 3)
        if problems.count:
            raise OrthancOpsError('%d instance(s) of the backup in %s could not be recovered (%s); the %d others were.'
                                  % (problems.count, self.folder, '; '.join(problems[:PROBLEMS_SHOWN]), len(recovered)),
                                  problems=list(problems), problems_count=problems.count, **result)
        return result

    def _check_backup(self):
        if self.manifest['index_backend'] != self.backend.name:
            raise OrthancOpsError('The backup in %s holds a %s index but the configuration %s uses %s: a throwaway '
                                  'Orthanc on it would need another database. Nothing was changed.'
                                  % (self.folder, self.manifest['index_backend'], self.config.path, self.backend.name))
        # Only listed files are read, each by its listed path: the index or dump now, the storage files of the
        # chosen instances as they are linked. A walk of the whole backup would cost more than the recovery.
        problems = _manifest.area_problems(self.folder, self.manifest, self.backend.folder)
        if problems.count:
            raise OrthancOpsError('The backup in %s is damaged (%d problem(s): %s). Nothing was changed; recover '
                                  'from another backup.' % (self.folder, problems.count, '; '.join(problems[:PROBLEMS_SHOWN])),
                                  problems=list(problems), problems_count=problems.count)

    def _choose(self, sandbox):
        """({instance id: study id} of what the selectors choose in the backup, in order; the selectors that
        chose nothing)."""
        chosen, not_found = {}, []
        if self.params['missing']:
            live = set(self.rest.get('/instances'))
            for study in sandbox.get('/studies'):
                chosen.update(self._instances_of(sandbox, 'studies', study, skip=live))
        for option, value in self.selectors:
            if option == 'resources':
                level = next((level for level in LEVELS if sandbox.read('/%s/%s' % (level, value))), None)
                found = self._instances_of(sandbox, level, value) if level else {}
            else:
                level, tag = FINDERS[option]
                found = {}
                for resource in sandbox.post('/tools/find', {'Level': level, 'Query': {tag: value}}):
                    found.update(self._instances_of(sandbox, 'studies' if level == 'Study' else 'patients', resource))
            if not found:
                not_found.append('%s %s' % (option, value))
            chosen.update(found)
        if not_found and not chosen:
            raise OrthancOpsError('Nothing in the backup %s matches %s. Nothing was changed; check the values, or '
                                  'choose another backup.' % (self.manifest['backup_id'], ', '.join(not_found)))
        for missing in not_found:
            self.module.warn('Nothing in the backup %s matches %s.' % (self.manifest['backup_id'], missing))
        return chosen, not_found

    @staticmethod
    def _instances_of(sandbox, level, resource, skip=()):
        """{instance id: study id} of the instances of one resource."""
        if level in ('patients', 'studies'):
            studies = [resource] if level == 'studies' else [study['ID'] for study in
                                                             sandbox.get('/patients/%s/studies' % resource)]
            return dict((instance['ID'], study) for study in studies
                        for instance in sandbox.get('/studies/%s/instances' % study) if instance['ID'] not in skip)
        study = sandbox.get('/%s/%s/study' % (level, resource))['ID']
        instances = [resource] if level == 'instances' else [
            instance['ID'] for instance in sandbox.get('/series/%s/instances' % resource)]
        return dict((instance, study) for instance in instances)

    def _live_has(self, instance):
        return self.rest.read('/instances/%s' % instance) is not None

    def _transfer(self, sandbox, wanted):
        """Upload to the live Orthanc every instance of ``wanted`` it lacks, each checked against the MD5 of the
        backup's index before and after; (recovered instance ids, Findings)."""
        problems = Findings(PROBLEMS_KEPT)
        expected = dict((instance, sandbox.rest.read('/instances/%s/attachments/dicom/info' % instance))
                        for instance in wanted)
        damaged = {}
        if os.path.isdir(os.path.join(self.folder, 'storage')):
            damaged = sandbox.link(set(info['Uuid'] for info in expected.values()))
        recovered = []
        for instance, info in expected.items():
            if info['Uuid'] in damaged:
                problems.add('instance %s: %s' % (instance, damaged[info['Uuid']]))
                continue
            try:
                data = sandbox.rest.download('/instances/%s/file' % instance)
            except OrthancOpsError as exc:
                problems.add('instance %s: %s' % (instance, exc))
                continue
            md5 = hashlib.md5(data).hexdigest()
            if md5 != info['UncompressedMD5']:
                problems.add('instance %s: its file has MD5 %s, the backup\'s index says %s'
                             % (instance, md5, info['UncompressedMD5']))
                continue
            if self.rest.upload('/instances', data).get('Status') != 'Success':
                continue    # stored meanwhile by someone else: left alone
            live_md5 = self.rest.download('/instances/%s/attachments/dicom/md5' % instance).decode().strip('"\n ')
            if live_md5 != md5:
                problems.add('instance %s: Orthanc stored it with MD5 %s, the backup has %s' % (instance, live_md5, md5))
                continue
            recovered.append(instance)
        return recovered, problems

    def _labels(self, sandbox, wanted, instances, planned=False):
        """The labels the backup holds on ``instances`` (ids of ``wanted``), their series, studies and patients,
        where the live Orthanc has the resource (the instance recovered, its study not deleted meanwhile), or
        will have it once they are recovered (``planned``): [(level, id, label)]."""
        labels = self.backend.labels(sandbox.source, sandbox.name)
        if not labels:
            return []
        resources = set(instances)
        for study in set(wanted[instance] for instance in instances):
            details = sandbox.rest.get('/studies/%s' % study)
            resources.update([study, details['ParentPatient']] + details.get('Series', []))
        return [(level, resource, label) for level, resource, label in labels
                if resource in resources and (planned or self.rest.read('/%s/%s' % (level, resource)) is not None)]

    @staticmethod
    def _studies(sandbox, wanted, instances):
        """The studies of ``instances`` (ids of ``wanted``): their id, main tags and patient, with how many of
        their instances came back."""
        counts = {}
        for instance in instances:
            counts[wanted[instance]] = counts.get(wanted[instance], 0) + 1
        studies = []
        for study, count in counts.items():
            details = sandbox.get('/studies/%s' % study)
            tags = details.get('MainDicomTags', {})
            entry = dict((tag, tags.get(tag)) for tag in STUDY_TAGS)
            entry.update(ID=study, PatientID=details.get('PatientMainDicomTags', {}).get('PatientID'),
                         instances=count)
            studies.append(entry)
        return studies


def main(module):
    exit_with(module, lambda: Recover(module).run())
