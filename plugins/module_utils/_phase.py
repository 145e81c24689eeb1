# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every phase that acts on an Orthanc starts from: its configuration, backend, REST API and service."""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _backends, _rest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import check_runs, load_configuration
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import Repository
from ansible_collections.orthanc_ops.backup.plugins.module_utils._service import Service


class Phase:
    """The configuration, backend, REST client and service of the Orthanc a phase acts on."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.config = load_configuration(module)
        self.backend = _backends.for_config(module, self.config)
        self.rest = _rest.from_params(self.params, self.config)
        self._service = None

    @property
    def service(self):
        """How to stop and start Orthanc, for the phases that may (their modules take the service options)."""
        if self._service is None:
            self._service = Service(self.module, self.rest, self.config)
        return self._service

    def check_target(self):
        """Before anything is stopped: the Orthanc on the configured port is the one configured."""
        check_runs(self.config.path, self.config.host_http_port)

    def open_repository(self):
        return Repository.from_params(self.module)
