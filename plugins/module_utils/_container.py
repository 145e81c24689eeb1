# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc in a Docker or Podman container, seen from the host through the engine's CLI.

The configuration is the one the container runs (read through the running process's root, else
through the container's mounts), ``${NAME}`` comes from the container's environment, and every data
path inside the container is mapped to the host through the container's mounts: data that lives
only in the container's writable layer cannot be backed up or restored safely and is refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import posixpath

from ansible_collections.orthanc_ops.backup.plugins.module_utils._config import Environment
from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._proc import (
    is_orthanc, network_namespace, path_arguments, process_environment, process_tree, several_configurations)

ENGINES = ('docker', 'podman')
# Where the entrypoint of orthancteam/orthanc writes the configuration it generates and runs.
GENERATED_CONFIGURATION = '/tmp/orthanc.json'


def command_configuration(argv):
    """The configuration an ``Orthanc [options] CONFIG`` command line names, or None; several are refused."""
    if not argv or not os.path.basename(argv[0]).startswith('Orthanc'):
        return None
    paths = path_arguments(argv)
    if len(paths) > 1:
        raise several_configurations(paths)
    return paths[0] if paths else None


class Container:
    """One container of an engine, inspected once."""

    def __init__(self, module, engine, binary, name, info):
        self.module, self.engine, self.binary, self.name, self.info = module, engine, binary, name, info

    @classmethod
    def find(cls, module, engine, name):
        """The container ``name`` of ``engine`` (None when the engine is not installed or has no such container)."""
        binary = module.get_bin_path(engine)
        if not binary:
            return None
        rc, out, dummy = module.run_command([binary, 'container', 'inspect', name])
        if rc != 0:
            return None
        return cls(module, engine, binary, name, json.loads(out)[0])

    @property
    def container(self):
        return self

    @staticmethod
    def inside(path):
        return posixpath.normpath(posixpath.join('/', path))

    def identity(self, path):
        """What names this Orthanc across restarts of its container (the lock of the Orthanc)."""
        return '%s container %s: %s' % (self.engine, self.name, path)

    @property
    def running(self):
        return bool(self.info['State'].get('Running'))

    @property
    def pid(self):
        return self.info['State'].get('Pid') if self.running else None

    def orthanc_pids(self):
        """The Orthanc processes of the running container, whatever network it is on."""
        return [pid for pid in process_tree(self.pid) if is_orthanc(pid)] if self.pid else []

    def describe(self):
        return {'kind': 'container', 'engine': self.engine, 'name': self.name, 'running': self.running,
                'image': self.info.get('ImageName') or self.info['Config'].get('Image')}

    def _command(self):
        entrypoint, command = self.info['Config'].get('Entrypoint'), self.info['Config'].get('Cmd')
        as_list = [[value] if isinstance(value, str) and value else value or [] for value in (entrypoint, command)]
        return as_list[0] + as_list[1]

    def configuration_path(self):
        """The configuration Orthanc runs inside the container: from the running Orthanc's command line,
        else from the container's command, else the one its entrypoint generated when it last ran."""
        if self.pid:
            with open('/proc/%d/cmdline' % self.pid, 'rb') as handle:
                argv = [arg.decode(errors='surrogateescape') for arg in handle.read().split(b'\0') if arg]
            path = command_configuration(argv)
            if path:
                return posixpath.join(self.info['Config'].get('WorkingDir') or '/', path)
        path = command_configuration(self._command())
        if path:
            return posixpath.join(self.info['Config'].get('WorkingDir') or '/', path)
        # A stopped container whose entrypoint generates the configuration: the one it generated last time.
        if os.path.isfile(self.readable(GENERATED_CONFIGURATION)):
            return GENERATED_CONFIGURATION
        raise OrthancOpsError('Cannot tell which configuration the %s container "%s" runs (its command is %s, and it '
                              'holds no generated %s). Start it, or set "config" to the configuration path inside '
                              'the container.' % (self.engine, self.name, ' '.join(self._command()) or 'empty',
                                                  GENERATED_CONFIGURATION))

    def environment(self):
        """The environment Orthanc runs with: the running process's, else the container's definition."""
        if self.pid:
            values = process_environment(self.pid)
        else:
            values = dict(item.split('=', 1) for item in self.info['Config'].get('Env') or [] if '=' in item)
        return Environment([('the environment of the %s container "%s"' % (self.engine, self.name), values)],
                           complete=True)

    def on_host(self, path, what):
        """The host path of ``path`` inside the container, through the mount that holds it."""
        path = posixpath.normpath(path)
        best = None
        for mount in self.info.get('Mounts') or []:
            destination = posixpath.normpath(mount['Destination'])
            if (path == destination or path.startswith(destination.rstrip('/') + '/')) and (
                    best is None or len(destination) > len(posixpath.normpath(best['Destination']))):
                best = mount
        if best is None:
            raise OrthancOpsError('%s %s is not on a volume or bind mount of the %s container "%s": it lives in the '
                                  'container\'s writable layer, which a backup cannot reach safely. Put it on a volume.'
                                  % (what[0].upper() + what[1:], path, self.engine, self.name))
        relative = posixpath.relpath(path, posixpath.normpath(best['Destination']))
        return posixpath.normpath(posixpath.join(best['Source'], relative))

    def readable(self, path):
        """A host path to read ``path`` of the container: through the running process's root, else its mount,
        else a private copy the engine takes from the stopped container's own files."""
        if self.pid:
            return '/proc/%d/root%s' % (self.pid, posixpath.normpath(path))
        try:
            return self.on_host(path, 'the configuration')
        except OrthancOpsError:
            return self._copied(path)

    def _copied(self, path):
        """``path`` copied out of the container into the module's private temporary folder (removed at
        exit); where it would be when the container has no such file."""
        copy = os.path.join(self.module.tmpdir, 'container-files', posixpath.normpath(path).lstrip('/'))
        if not os.path.lexists(copy):
            os.makedirs(os.path.dirname(copy), mode=0o700, exist_ok=True)
            self.module.run_command([self.binary, 'cp', '%s:%s' % (self.name, path), copy])
        if os.path.islink(copy):
            raise OrthancOpsError('%s in the %s container "%s" is a symbolic link; set "config" to the file it names.'
                                  % (path, self.engine, self.name))
        return copy

    def published_port(self, port):
        """The host port that reaches ``port`` of the container (itself with the host's network)."""
        bindings = ((self.info.get('NetworkSettings') or {}).get('Ports') or {}).get('%d/tcp' % port)
        for binding in bindings or []:
            if binding.get('HostPort'):
                return int(binding['HostPort'])
        return port

    def stop_argv(self, timeout):
        return [self.binary, 'stop', '--time', str(timeout), self.name]

    def start_argv(self):
        return [self.binary, 'start', self.name]


def named(module, engines, name):
    """The container ``name`` of the first of ``engines`` that has one, or None."""
    return next((container for container in (Container.find(module, engine, name) for engine in engines)
                 if container), None)


def find(module):
    """The container that O(service_manager) and O(service_name) name, or None for a host service.

    ``auto`` takes a container of that name when an installed engine has one.
    """
    manager, name = module.params.get('service_manager') or 'auto', module.params.get('service_name') or 'orthanc'
    if manager in ENGINES:
        if not module.get_bin_path(manager):
            raise OrthancOpsError('service_manager=%s, but %s is not installed on this host.' % (manager, manager))
        container = named(module, (manager,), name)
        if container is None:
            raise OrthancOpsError('There is no %s container named "%s" on this host. Set service_name to the name of '
                                  'the Orthanc container ("%s ps -a" lists them).' % (manager, name, manager))
        return container
    return named(module, ENGINES, name) if manager == 'auto' else None


def database_network(module):
    """Where connections to the database start from, and words for messages: the host's network, or with
    O(database_container) the network namespace of that running container (reached there whatever the
    host can route to or resolve)."""
    name = module.params.get('database_container')
    if not name:
        return contextlib.nullcontext, ''
    manager = module.params.get('service_manager')
    engines = (manager,) if manager in ENGINES else ENGINES
    container = named(module, engines, name)
    if container is None:
        raise OrthancOpsError('There is no %s container named "%s" (database_container) on this host. Set '
                              'database_container to the name of the database\'s container.'
                              % (' or '.join(engines), name))
    if not container.pid:
        raise OrthancOpsError('The database container "%s" is not running: start it ("%s start %s") and run the '
                              'task again.' % (name, container.engine, name))
    return (functools.partial(network_namespace, container.pid),
            ' in the network of the %s container "%s"' % (container.engine, name))
