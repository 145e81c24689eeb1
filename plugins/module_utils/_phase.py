# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every phase that may stop an Orthanc starts from: its context, backend and service."""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils._backends import registry
from ansible_collections.orthanc_ops.backup.plugins.module_utils._context import Context
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._service import Service


class Phase(Context):
    """A context with the backend and the service of the Orthanc, for the phases that back up, restore or stop it."""

    def __init__(self, module):
        super().__init__(module)
        self.check_layout()
        self.backend = registry.for_config(module, self.config)
        self._service = None

    @property
    def service(self):
        """How to stop and start Orthanc, for the phases that may (their modules take the service options)."""
        if self._service is None:
            self._service = Service(self.module, self.rest, self.config)
        return self._service

    def open_repository(self):
        return Repository.from_params(self.module)
