# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The catalog phase: which backups of an instance a repository holds, on any host."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import PARTIAL, Repository, new_backup_id, unusable
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import make_dirs


def catalog(module):
    params = module.params
    repository = Repository.from_params(module)
    exists = os.path.isdir(repository.path)
    if not exists and params['create'] and not module.check_mode:
        try:
            make_dirs(repository.path)
        except OSError as exc:
            raise unusable(repository.path, exc)
    backups = repository.backup_ids()
    partials = sorted(name for name in os.listdir(repository.path) if name.endswith(PARTIAL)) if exists else []
    drills = repository.drills()
    since = new_backup_id(datetime.now(timezone.utc) - timedelta(days=params['history_days']))
    return {'changed': not exists and params['create'], 'path': repository.path, 'backups': backups,
            'latest': backups[-1] if backups else None, 'partials': partials,
            'last_drill': drills.get('last'), 'last_passed_drill': drills.get('last_passed'),
            'history': repository.runs(since) if params['history_days'] > 0 else []}


def main(module):
    exit_with(module, lambda: catalog(module))
