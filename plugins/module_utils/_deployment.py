# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where and how an Orthanc is deployed: a service of the host or a container, the configuration it
really runs (``${NAME}`` from its own environment) and the proof that the Orthanc on a port is it."""

from __future__ import annotations

import os
import shlex

from ansible_collections.orthanc_ops.backup.plugins.module_utils import _config, _container
from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import Environment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._service import host_manager
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import (
    configuration_of, listening_pids, process_environment, running_orthanc, same_path, shown)

# Debian's configuration folder, for an Orthanc that is not in a container.
DEFAULT_CONFIG = '/etc/orthanc'


def load_configuration(module):
    """The configuration the Orthanc of O(config) (or of the container O(service_name)) really runs, its
    secrets kept out of all output."""
    container = _container.find(module)
    if container:
        config = _config.load(module.params['config'] or container.configuration_path(), container.environment(),
                              container)
    else:
        path = module.params['config'] or DEFAULT_CONFIG
        config = _config.load(path, environment_of(module, path))
    module.no_log_values.update(config.secrets())
    return config


def describe_deployment(module, config):
    """What kind of deployment runs this configuration: a container (engine, name), a service of the host
    (systemd unit or init script), or commands."""
    if config.container:
        return config.container.describe()
    params = module.params
    manager = params.get('service_manager') or 'auto'
    if manager == 'auto':
        manager = host_manager(module, params['service_name'])
    if manager in ('systemd', 'sysvinit'):
        return {'kind': 'service', 'manager': manager, 'name': params['service_name']}
    return {'kind': manager or 'unknown'}


def environment_of(module, config_path):
    """Where the configuration's ``${NAME}`` get their values: the environment of the Orthanc that runs
    it, exactly; when none runs, its systemd unit's Environment= and EnvironmentFile=, then this
    module's own environment (a task's ``environment:``)."""
    params = module.params
    pid = running_orthanc(config_path)
    if pid:
        try:
            return Environment([('the environment of the running Orthanc (pid %s)' % pid, process_environment(pid))],
                               complete=True)
        except OSError:
            pass
    sources = []
    systemctl = module.get_bin_path('systemctl')
    name = params.get('service_name') or 'orthanc'
    manager = params.get('service_manager') or 'auto'
    if systemctl and (host_manager(module, name) if manager == 'auto' else manager) == 'systemd':
        rc, out, dummy = module.run_command([systemctl, 'show', '--property=Environment', '--property=EnvironmentFiles',
                                             name])
        if rc == 0:
            sources.append(('the systemd unit %s' % name, parse_systemd_environment(out)))
    sources.append(("this module's environment (the task's environment:)", dict(os.environ)))
    return Environment(sources)


def environment_file(path):
    """{name: value} of a systemd EnvironmentFile= (KEY=VALUE lines, # and ; comments, quotes)."""
    values = {}
    try:
        with open(path, errors='surrogateescape') as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line[0] in '#;' or '=' not in line:
            continue
        name, value = line.split('=', 1)
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        values[name.strip()] = value
    return values


def parse_systemd_environment(output, read_file=environment_file):
    """{name: value} from ``systemctl show -p Environment -p EnvironmentFiles``: EnvironmentFile= settings
    override Environment= ones, as systemd applies them."""
    values, files = {}, []
    for line in output.splitlines():
        key, dummy, value = line.partition('=')
        if key == 'Environment' and value:
            values.update(item.split('=', 1) for item in shlex.split(value) if '=' in item)
        elif key == 'EnvironmentFiles' and value:
            files.append(value.rsplit(' (', 1)[0])
    for path in files:
        values.update(read_file(path.lstrip('-')))
    return values


def check_runs(config_path, port):
    """Refuse when an Orthanc listening on ``port`` runs another configuration than ``config_path``:
    a wrong or empty configuration (default port 8042) must not make us stop or judge another server."""
    for pid in listening_pids(port):
        other = configuration_of(pid)
        if other and not same_path(other, config_path):
            raise OrthancOpsError('The Orthanc listening on port %d (pid %d) runs the configuration %s, not %s. '
                                  'Nothing was stopped or changed: point "config" (and "url") at the configuration '
                                  'of the Orthanc to act on.' % (port, pid, shown(other), config_path))
