# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

# Problems a result lists word for word; its count covers all of them.
PROBLEMS_KEPT = 1000
# Problems (or names) a failure message or a warning names, the first of them.
PROBLEMS_SHOWN = 10


class OrthancOpsError(Exception):
    """A failure to report with fail_json: the message says what went wrong and what to do.

    ``details`` are extra return values for the failed task (for example the
    downtime so far, or the path of a backup that was kept).
    """

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


class OrthancDown(OrthancOpsError):
    """Orthanc was stopped by the operation and its start failed; ``reason`` says how."""

    def __init__(self, message, reason, **details):
        super().__init__(message, orthanc_down=True, **details)
        self.reason = reason


class Findings(list):
    """The first ``keep`` problems found, word for word, and ``count``, how many there were in all: a
    lost storage folder makes a million of them."""

    def __init__(self, keep):
        super().__init__()
        self.keep = keep
        self.count = 0

    def add(self, problem):
        self.count += 1
        if len(self) < self.keep:
            self.append(problem)


def exit_with(module, action):
    """Run ``action()`` and exit the module with its result, or fail with the error's message."""
    try:
        result = action()
    except OrthancOpsError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(**result)
