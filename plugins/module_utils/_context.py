# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every operation on one Orthanc starts from: its configuration, as the running Orthanc sees it, and its REST API.

The operations that only read its files and talk to it (audit, resend, info) need no more; the phases that
may stop it build on this (``_phase.Phase``).
"""

from __future__ import annotations

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _rest
from ansible_collections.orthanc_ops.backup.plugins.module_utils._deployment import check_runs, load_configuration
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError


class Context:
    """The configuration and the REST client of the Orthanc an operation acts on."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.config = load_configuration(module)
        self.rest = _rest.from_params(self.params, self.config)

    def check_layout(self):
        """Before anything is read or changed: the files are where the collection looks for them."""
        layout = self.config.unsupported_layout()
        if layout:
            raise OrthancOpsError('%s sets AdvancedStorage with %s: the advanced-storage plugin then keeps files at paths '
                                  'of its own, in several storages or in its own queue, which this collection does not '
                                  'back up, restore, audit or recover yet (it would miss them, or take them for '
                                  'orphans). Nothing was stopped or changed. Back this Orthanc up with its own tools '
                                  'until then.' % (self.config.path, layout))

    def check_target(self):
        """Before anything is changed: the Orthanc on the configured port is the one configured."""
        check_runs(self.config.path, self.config.host_http_port)
