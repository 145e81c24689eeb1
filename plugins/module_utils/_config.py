# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read an Orthanc configuration the way Orthanc does: one JSON file, or every
``*.json`` of a folder merged, with ``//`` and ``/* */`` comments allowed and
``${NAME}`` expanded from Orthanc's environment."""

from __future__ import annotations

import json
import os
import re

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError
from ansible_collections.orthanc_ops.backup.plugins.module_utils._files import open_regular

DEFAULT_STORAGE_DIRECTORY = 'OrthancStorage'
DEFAULT_HTTP_PORT = 8042
# The largest configuration file read: other Orthancs' files are read too, and they are not ours.
CONFIG_FILE_LIMIT = 16 * 1024 * 1024


def strip_comments(text):
    """Remove // and /* */ comments outside JSON strings."""
    out = []
    i = 0
    length = len(text)
    in_string = False
    while i < length:
        char = text[i]
        if in_string:
            out.append(char)
            if char == '\\' and i + 1 < length:
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
            i += 1
        elif char == '"':
            in_string = True
            out.append(char)
            i += 1
        elif text.startswith('//', i):
            end = text.find('\n', i)
            i = length if end < 0 else end
        elif text.startswith('/*', i):
            end = text.find('*/', i + 2)
            if end < 0:
                raise ValueError('unterminated /* comment')
            # Keep the line count so that JSON errors point at the right line.
            out.append('\n' * text.count('\n', i, end))
            i = end + 2
        else:
            out.append(char)
            i += 1
    return ''.join(out)


# Orthanc's own pattern (Toolbox::SubstituteVariables), applied to the text of each file before it is
# parsed: ${NAME}, ${NAME:-default}, ${NAME:-"default"}, ${NAME:-'default'}.
VARIABLE = re.compile(r"""\$\{([^:]*?)\}|\$\{([^:]*?):-([^'"]*?)\}|\$\{([^:]*?):-"([^"]*?)"\}|\$\{([^:]*?):-'([^']*?)'\}""")


class Environment:
    """Where the values of ``${NAME}`` come from: (description, {name: value}) sources, first match wins.

    ``complete`` says the first source is the very environment Orthanc runs with: a name missing
    there is then empty, as Orthanc makes it; otherwise a missing name is an error that says where
    the module looked.
    """

    def __init__(self, sources, complete=False):
        self.sources = [(where, values) for where, values in sources if values is not None]
        self.complete = complete
        self.used = set()

    def value(self, name, default, path):
        self.used.add(name)
        for dummy, values in self.sources:
            if name in values:
                return values[name]
        if default is not None or self.complete:
            return default or ''
        raise OrthancOpsError('The Orthanc configuration file %s uses ${%s}, which is set in none of: %s. Set it '
                              'where Orthanc gets it (the service\'s Environment= or EnvironmentFile=), or in the '
                              'task\'s environment, before anything can be backed up or restored.'
                              % (path, name, '; '.join(where for where, dummy in self.sources) or 'no environment'))

    def substitute(self, text, path):
        def replace(match):
            groups = match.groups()
            if groups[0] is not None:
                return self.value(groups[0], None, path)
            name, default = next((groups[i], groups[i + 1]) for i in (1, 3, 5) if groups[i] is not None)
            return self.value(name, default, path)
        return VARIABLE.sub(replace, text)


def parse_file(path, environment=None):
    """Parse one configuration file, ``${NAME}`` expanded from ``environment``; return its top-level object."""
    try:
        # A regular file (a FIFO or a device would block or never end), read up to a limit.
        with open_regular(path) as handle:
            data = handle.read(CONFIG_FILE_LIMIT + 1)
        if len(data) > CONFIG_FILE_LIMIT:
            raise OSError('it is larger than %d MiB' % (CONFIG_FILE_LIMIT // 2**20))
        text = data.decode('utf-8-sig')
    except (OSError, UnicodeDecodeError) as exc:
        raise OrthancOpsError('Cannot read the Orthanc configuration file %s: %s. '
                              'Check the path given in "config" and that it is readable.'
                              % (path, getattr(exc, 'strerror', None) or exc))
    if not text.strip():
        return {}
    try:
        text = strip_comments(text)
        # After the comments are gone: a variable named only in a comment is not needed.
        if environment is not None:
            text = environment.substitute(text, path)
        value = json.loads(text)
    except ValueError as exc:
        raise OrthancOpsError('The Orthanc configuration file %s is not valid JSON: %s. '
                              'Fix the file (Orthanc would refuse it too).' % (path, exc))
    if not isinstance(value, dict):
        raise OrthancOpsError('The Orthanc configuration file %s does not hold a JSON object.' % path)
    return value


class HostPaths:
    """The paths of an Orthanc that runs on this host, as they are (a container maps them, see _container)."""

    container = None

    @staticmethod
    def inside(path):
        return os.path.abspath(path)

    @staticmethod
    def readable(path):
        return path

    @staticmethod
    def on_host(path, what):
        return path

    @staticmethod
    def published_port(port):
        return port

    @staticmethod
    def identity(path):
        return os.path.realpath(path)


class OrthancConfig:
    """The merged configuration and the paths it implies; ``environment`` expands ``${NAME}`` as Orthanc does.

    ``paths`` maps the paths Orthanc sees to this host's (HostPaths, or a container). ``path`` and
    ``base_dir`` are where this host reads and writes the configuration; every data path the
    configuration names (``storage_dir``, ``index_dir``) is a host path.
    """

    def __init__(self, path, environment=None, paths=None):
        self.paths = paths or HostPaths
        self.container = self.paths.container
        self.inside = inside = self.paths.inside(path)
        self.path = self.paths.readable(inside)
        self.identity = self.paths.identity(inside)
        self.environment = environment
        if os.path.isdir(self.path):
            self.base_dir, self.inner_base = self.path, inside
            # Orthanc reads every *.json of the folder, the extension in any case.
            self.files = sorted(os.path.join(self.path, name) for name in os.listdir(self.path)
                                if name.lower().endswith('.json') and os.path.isfile(os.path.join(self.path, name)))
        elif os.path.exists(self.path):
            self.base_dir, self.inner_base = os.path.dirname(self.path), os.path.dirname(inside)
            self.files = [self.path]
        else:
            raise OrthancOpsError('The Orthanc configuration %s does not exist. Set "config" to the '
                                  'configuration file or folder that Orthanc is started with.' % inside)
        self.values = {}
        origin = {}
        for file_path in self.files:
            for key, value in parse_file(file_path, environment).items():
                if key in origin:
                    raise OrthancOpsError('The configuration key "%s" is defined in both %s and %s; '
                                          'Orthanc refuses this. Keep it in one file.'
                                          % (key, origin[key], file_path))
                origin[key] = file_path
                self.values[key] = value

    def named_files(self):
        """{file name: path} of the configuration files."""
        return dict((os.path.basename(path), path) for path in self.files)

    def get(self, key, default=None):
        return self.values.get(key, default)

    def resolve(self, path, what):
        """The host path of a path of the configuration (relative to the configuration folder)."""
        return self.paths.on_host(os.path.normpath(os.path.join(self.inner_base, os.path.expanduser(path))), what)

    @property
    def storage_dir(self):
        return self.resolve(self.get('StorageDirectory', DEFAULT_STORAGE_DIRECTORY), 'the storage folder')

    @property
    def index_dir(self):
        return self.resolve(self.get('IndexDirectory', self.get('StorageDirectory', DEFAULT_STORAGE_DIRECTORY)),
                            'the index folder')

    @property
    def storage_compression(self):
        return bool(self.get('StorageCompression', False))

    def port(self, key, default):
        """A TCP port setting, or a clear error naming the setting."""
        value = self.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise OrthancOpsError('%s in the configuration %s is %r, not a TCP port (1-65535). Fix the configuration '
                                  '(Orthanc would not start with it).' % (key, self.path, value))
        return value

    @property
    def http_port(self):
        return self.port('HttpPort', DEFAULT_HTTP_PORT)

    @property
    def host_http_port(self):
        """The port of this host that reaches Orthanc's HTTP port (a container may publish it elsewhere)."""
        return self.paths.published_port(self.http_port)

    def default_url(self):
        scheme = 'https' if self.get('SslEnabled', False) else 'http'
        return '%s://127.0.0.1:%d' % (scheme, self.host_http_port)

    def default_credentials(self):
        """The first registered user, when authentication is on."""
        users = self.get('RegisteredUsers') or {}
        if isinstance(users, dict) and users:
            name = sorted(users)[0]
            return name, users[name]
        return None, None

    def secrets(self):
        """The passwords the configuration holds (database sections, ConnectionUri, RegisteredUsers), literal
        or from ${NAME}: values no output may show."""
        found = set()
        for section in self.values.values():
            if isinstance(section, dict):
                found.update(str(section[key]) for key in ('Password', 'ConnectionUri') if section.get(key))
        users = self.get('RegisteredUsers')
        if isinstance(users, dict):
            found.update(str(password) for password in users.values() if password)
        return found

    def unsupported_layout(self):
        """What of the advanced-storage plugin (Orthanc 1.12.8 and later) puts files where this collection does not
        look for them yet, in words, or None: paths of its own (NamingScheme), several storages, a folder it
        indexes, its own queue of deletions. Enabled with none of them, it keeps Orthanc's layout."""
        section = self.get('AdvancedStorage')
        if not (isinstance(section, dict) and section.get('Enable') is True):
            return None
        found = []
        if section.get('NamingScheme', 'OrthancDefault') != 'OrthancDefault':
            found.append('NamingScheme %s' % section['NamingScheme'])
        for option, enabled in (('MultipleStorages', bool((section.get('MultipleStorages') or {}).get('Storages'))),
                                ('Indexer', (section.get('Indexer') or {}).get('Enable') is True),
                                ('DelayedDeletion', (section.get('DelayedDeletion') or {}).get('Enable') is True)):
            if enabled:
                found.append(option)
        return ', '.join(found) or None

    def sections_enabling(self, option):
        """Names of the plugin sections that set ``option`` (EnableIndex, EnableStorage) to true."""
        return sorted(key for key, value in self.values.items()
                      if isinstance(value, dict) and value.get(option) is True)


def load(path, environment=None, paths=None):
    return OrthancConfig(path, environment, paths)
