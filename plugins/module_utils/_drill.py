# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The drill phase: prove a backup restorable by restoring it into a throwaway Orthanc (see _sandbox).

Every storage file is hard-linked into the throwaway Orthanc checked against the manifest's size and
MD5, its index staged (a SQLite copy, or the dump restored into a database of its own), Orthanc
started; the time from nothing to a serving Orthanc is the RTO. Orthanc's /statistics must hold the
manifest's counts, and Orthanc itself checks the MD5 of a random sample of instances (their files
read through its index). Nothing of a production Orthanc is used but the database server a
PostgreSQL or MySQL configuration names (login_* may name another).
"""

from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _manifest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import load_configuration
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import PROBLEMS_KEPT, OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_FORMAT
from ansible_collections.orthanc_ops.backup.plugins.module_utils._sandbox import Sandbox, backup_source
from ansible_collections.orthanc_ops.backup.plugins.module_utils._versions import differences, too_old

# Problems a drill names in its reason.
REASONS_SHOWN = 5


class Drill:
    """A restore drill: a throwaway Orthanc started on a copy of a backup, its answers checked against the
    manifest, the outcome recorded in the repository; the live Orthanc is never touched."""

    def __init__(self, module):
        self.module, self.params = module, module.params
        self.config = load_configuration(module)
        self.repository, self.folder, self.manifest, self.work_dir = backup_source(module)
        self.backend = registry.named(module, self.config, self.manifest['index_backend'])

    def run(self):
        """Check mode plans; otherwise run the drill with the repository's lock and record its outcome there."""
        plan = {'backup_id': self.manifest['backup_id'], 'drilled_from': self.folder,
                'index_backend': self.manifest['index_backend'], 'files': self.manifest['files'],
                'bytes': self.manifest['bytes'], 'counts': self.manifest['counts']}
        if self.module.check_mode:
            return {'changed': False, 'plan': plan, 'msg': 'check mode: nothing was started'}
        with self.repository.locked('drill') if self.repository else nullcontext():
            drill = self._drill()
            if self.repository:
                self.repository.record_drill(dict((key, drill[key]) for key in
                                                  ('backup_id', 'drilled_at', 'passed', 'rto_seconds', 'reason')))
                drill['last_passed_at'] = self.repository.drills().get('last_passed', {}).get('drilled_at')
        if not drill['passed']:
            raise OrthancOpsError('The drill of backup %s failed: %s' % (drill['backup_id'], drill['reason']),
                                  **drill)
        return dict(drill, changed=True)

    def _drill(self):
        """The drill's result; its problems, when it fails, in ``problems`` and ``reason``."""
        started = time.monotonic()
        drill = {'backup_id': self.manifest['backup_id'], 'drilled_from': self.folder,
                 'drilled_at': datetime.now(timezone.utc).strftime(ID_FORMAT), 'rto_seconds': None,
                 'statistics': None, 'checked_instances': 0, 'orthanc_version': None}
        found = _manifest.problems(self.folder, self.manifest, checked_later=('storage/',))
        problems, count = list(found), found.count
        if not count:
            try:
                problems = self._in_sandbox(drill, started)
            except OrthancOpsError as exc:
                problems = [str(exc)]
            count = len(problems)
        drill.update(passed=not count, problems=problems[:PROBLEMS_KEPT], problems_count=count,
                     reason='; '.join(problems[:REASONS_SHOWN]) + ('; ...' if count > REASONS_SHOWN else ''))
        return drill

    def _in_sandbox(self, drill, started):
        """Start the throwaway Orthanc on the backup, time it (the RTO), and collect the differences between what
        it serves and what the manifest promised."""
        with Sandbox(self.module, self.backend, self.config, self.work_dir, self.folder, self.manifest) as sandbox:
            problems = []
            if os.path.isdir(os.path.join(self.folder, 'storage')):
                problems.extend(sorted(sandbox.link().values()))
            sandbox.start()
            drill['rto_seconds'] = round(time.monotonic() - started, 3)
            software = sandbox.rest.software()
            drill['orthanc_version'] = software['orthanc_version']
            check = differences if self.params['match_versions'] else too_old
            problems.extend('the Orthanc of this host has %s' % found for found in check(self.manifest, software))
            drill['statistics'] = sandbox.rest.statistics()
            problems.extend(_manifest.count_differences(self.manifest, drill['statistics']))
            instances = sandbox.rest.get('/instances')
            sample = self.params['check_instances']
            chosen = random.sample(instances, sample) if 0 < sample < len(instances) else instances
            for instance in chosen:
                status, dummy = sandbox.rest.exchange('POST', '/instances/%s/attachments/dicom/verify-md5' % instance, b'')
                if status != 200:
                    problems.append('instance %s: Orthanc finds its file missing or of another MD5 than its index '
                                    'says (HTTP %d)' % (instance, status))
            drill['checked_instances'] = len(chosen)
        return problems


def main(module):
    exit_with(module, lambda: Drill(module).run())
