# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus metrics for node_exporter's textfile collector: one file per kind of run and Orthanc instance,
``<folder>/orthanc_<kind>_<instance>.prom``, replaced atomically (written under a name the collector does
not read, synced, renamed)."""

from __future__ import annotations

import math
import os
import re
from datetime import datetime, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError, exit_with
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import create_file
from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_FORMAT, ID_PATTERN, check_instance

KINDS = ('backup', 'offsite', 'audit', 'drill')
# Not "instance": Prometheus gives that label the scraped target (the node_exporter) and would rename ours
# to exported_instance.
LABEL = 'orthanc_instance'
NAME = re.compile(r'^[a-z][a-z0-9_]*$')


def number(name, value):
    """A metric's value as a float: a number, a boolean (1 or 0), or a time (a backup id or an ISO 8601 date-time,
    UTC unless it says otherwise) as seconds since the epoch."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str) and value.lower() in ('true', 'false'):    # a template's boolean, as text
        return 1.0 if value.lower() == 'true' else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            if ID_PATTERN.match(value):
                moment = datetime.strptime(value, ID_FORMAT).replace(tzinfo=timezone.utc)
            else:
                moment = datetime.fromisoformat(value.replace('Z', '+00:00'))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
        except ValueError:
            try:
                return number(name, float(value))
            except ValueError:
                pass
    raise OrthancOpsError('metrics: %s is %r, which is neither a number, a boolean nor a time (a backup id or an '
                          'ISO 8601 date-time).' % (name, value))


def render(kind, instance, metrics):
    """The text format of ``metrics`` ({name: value or None}; None or '' leaves the metric out), each a gauge named
    ``orthanc_<kind>_<name>`` with the instance as its label."""
    lines = []
    label = instance.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    for name in sorted(metrics):
        if not NAME.match(name):
            raise OrthancOpsError('metrics: %r is not a metric name (lower case letters, digits and _, starting with '
                                  'a letter).' % (name,))
        if metrics[name] in (None, ''):    # a template's null may come as ''
            continue
        full = 'orthanc_%s_%s' % (kind, name)
        lines += ['# TYPE %s gauge' % full, '%s{%s="%s"} %r' % (full, LABEL, label, number(name, metrics[name]))]
    return ''.join(line + '\n' for line in lines)


def write(module):
    """Write the run's metrics as a node_exporter textfile, atomically, only when they changed."""
    params = module.params
    instance = check_instance(params['instance'])
    folder = params['metrics_dir']
    text = render(params['kind'], instance, params['metrics'])
    path = os.path.join(folder, 'orthanc_%s_%s.prom' % (params['kind'], instance))
    try:
        with open(path) as handle:
            changed = handle.read() != text
    except OSError:
        changed = True
    if changed and not module.check_mode:
        if not os.path.isdir(folder):
            raise OrthancOpsError('metrics_dir %s is not a folder; give the folder node_exporter\'s textfile collector '
                                  'reads (--collector.textfile.directory).' % folder)
        # A name the collector skips (it reads *.prom only) until the file is whole.
        partial = os.path.join(folder, '.orthanc_%s_%s.%d.tmp' % (params['kind'], instance, os.getpid()))
        with create_file(partial, 0o644) as handle:
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, path)
    return {'changed': changed, 'path': path, 'text': text}


def main(module):
    exit_with(module, lambda: write(module))
