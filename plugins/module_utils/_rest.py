# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc's REST API through ansible.module_utils.urls, and persistent connections for bulk requests."""

from __future__ import annotations

import base64
import contextlib
import http.client as http_client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlparse

from ansible.module_utils.urls import Request, make_context

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

PROBE_TIMEOUT = 2
# Seconds a request may take: Orthanc answers a REST call in milliseconds, a large download in seconds.
TIMEOUT = 30
POLL_INTERVAL = 0.05
RESOURCE_LEVELS = ('patients', 'studies', 'series', 'instances')


class OrthancRest:
    """Orthanc's REST API on ansible.module_utils.urls, with one TLS context and HTTP Basic credentials for
    all requests. ``network``: the context every connection is opened in (see _proc.network_namespace), for an
    Orthanc in the network of a container."""

    def __init__(self, url, username=None, password=None, validate_certs=True, network=contextlib.nullcontext):
        self.url = url.rstrip('/')
        self._network = network
        # One TLS context for every request: open_url would build one per request (about 20 ms each,
        # which the start/stop polling would pay).
        self._context = make_context(validate_certs=validate_certs)
        self._session = Request(url_username=username, url_password=password,
                                force_basic_auth=username is not None, validate_certs=validate_certs,
                                headers={'Accept': 'application/json'}, context=self._context)
        # Probes carry no credentials: while Orthanc is stopped, anyone may answer on its port.
        self._anonymous = Request(validate_certs=validate_certs, context=self._context)
        self._headers = {'Accept': 'application/json'}
        if username is not None:
            token = base64.b64encode(('%s:%s' % (username, password or '')).encode()).decode()
            self._headers['Authorization'] = 'Basic ' + token
        self._local = threading.local()

    def _open(self, path, method='GET', data=None, timeout=TIMEOUT):
        with self._network():
            return self._session.open(method, self.url + path, data=data, timeout=timeout)

    def request(self, path, method='GET', body=None, timeout=TIMEOUT, missing_ok=False):
        """A JSON document (None for a 404 when ``missing_ok``); OrthancOpsError with the reason on failure.

        ``body`` is sent as it is when it is bytes, else as JSON.
        """
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        try:
            with self._open(path, method=method, data=data, timeout=timeout) as response:
                return json.loads(response.read() or b'null')
        except HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise self._refused(method, path, exc.code, orthanc_reason(exc))
        except (URLError, OSError, ValueError) as exc:
            raise self._unreachable(method, path, getattr(exc, 'reason', exc))

    def _refused(self, method, path, status, reason):
        hint = (' Check url_username and url_password (or RegisteredUsers in the configuration).'
                if status in (401, 403) else reason)
        return OrthancOpsError('Orthanc at %s answered %s to %s %s.%s' % (self.url, status, method, path, hint))

    def _unreachable(self, method, path, reason):
        return OrthancOpsError('Orthanc at %s does not answer %s %s: %s. Check "url" and that Orthanc runs.'
                               % (self.url, method, path, reason))

    def _connection(self):
        """This thread's persistent connection to Orthanc."""
        connection = getattr(self._local, 'connection', None)
        if connection is None:
            parts = urlparse(self.url)
            if parts.scheme == 'https':
                connection = http_client.HTTPSConnection(parts.hostname, parts.port, timeout=TIMEOUT, context=self._context)
            else:
                connection = http_client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
            self._local.connection = connection
        return connection

    def exchange(self, method, path, body=None, content_type=None):
        """(status, body bytes) of one request over this thread's persistent connection.

        For the thousands of small requests of a listing or a transfer: ansible.module_utils.urls builds an
        opener and opens a connection for every request, which costs more than Orthanc's answer.
        """
        full_path = urlparse(self.url).path + path
        headers = dict(self._headers, **({'Content-Type': content_type} if content_type else {}))
        for attempt in (1, 2):
            connection = self._connection()
            try:
                with self._network():    # http.client opens its connection again when Orthanc closed it
                    connection.request(method, full_path, body=body, headers=headers)
                    response = connection.getresponse()
                return response.status, response.read()
            except (http_client.HTTPException, OSError) as exc:
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise self._unreachable(method, path, exc)

    def read(self, path):
        """GET a JSON document over this thread's persistent connection (None for a 404)."""
        status, body = self.exchange('GET', path)
        if status == 404:
            return None
        if status != 200:
            raise self._refused('GET', path, status, '')
        return json.loads(body)

    def download(self, path):
        """The bytes Orthanc answers to a GET of ``path``, over this thread's persistent connection."""
        status, body = self.exchange('GET', path)
        if status != 200:
            raise self._refused('GET', path, status, '')
        return body

    def upload(self, path, data):
        """POST ``data`` (a DICOM file) to ``path`` over this thread's persistent connection; Orthanc's JSON answer."""
        status, body = self.exchange('POST', path, data, 'application/dicom')
        if status != 200:
            raise self._refused('POST', path, status, orthanc_body_reason(body))
        return json.loads(body)

    def get(self, path, timeout=TIMEOUT):
        return self.request(path, timeout=timeout)

    def post(self, path, body, timeout=TIMEOUT):
        return self.request(path, method='POST', body=body, timeout=timeout)

    def attachments(self, threads=4):
        """{uuid: {'size', 'md5', 'resource', 'attachment'}} of every attachment Orthanc's index references.

        ``size`` and ``md5`` are those of the file in the storage area (the compressed ones, equal
        to the others when the file is not compressed). A resource deleted meanwhile is skipped.
        """
        def names(resource):
            return resource, self.read('/%s/attachments' % resource) or []

        def info(pair):
            resource, name = pair
            return resource, name, self.read('/%s/attachments/%s/info' % (resource, name))

        with ThreadPoolExecutor(threads) as pool:
            resources = ['%s/%s' % (level, public_id) for level in RESOURCE_LEVELS for public_id in self.get('/' + level)]
            pairs = [(resource, name) for resource, found in pool.map(names, resources) for name in found]
            found = {}
            for resource, name, details in pool.map(info, pairs):
                if details:
                    found[details['Uuid']] = {'size': details['CompressedSize'], 'md5': details['CompressedMD5'],
                                              'resource': resource, 'attachment': name}
        return found

    def answers(self):
        """True when an HTTP server answers at the URL (any status: 401 still means Orthanc is up)."""
        try:
            with self._network(), self._anonymous.open('GET', self.url + '/system', timeout=PROBE_TIMEOUT):
                return True
        except HTTPError:
            return True
        except (URLError, OSError, ValueError):
            return False

    def wait_until_answering(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.answers():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def system(self):
        return self.get('/system')

    def statistics(self):
        return self.get('/statistics')

    def pending_deletions(self):
        """The files the DelayedDeletion plugin (Orthanc 1.12 and later) has still to delete: Orthanc removed them from
        its index, so until then they look like orphans; 0 without the plugin."""
        return (self.read('/plugins/delayed-deletion/status') or {}).get('FilesPendingDeletion') or 0

    def software(self):
        """What a backup needs to be restorable later: Orthanc's version, its database schema version and
        every loaded plugin with its version."""
        system = self.system()
        plugins = dict((name, self.get('/plugins/%s' % quote(name, safe='')).get('Version'))
                       for name in self.get('/plugins') if not name.endswith('.js'))
        return {'orthanc_version': system.get('Version'), 'database_version': system.get('DatabaseVersion'),
                'plugins': plugins}


def orthanc_reason(error):
    """Orthanc's own explanation of a failed request (its JSON error body), as a sentence."""
    try:
        return orthanc_body_reason(error.read())
    except (OSError, AttributeError):
        return ''


def orthanc_body_reason(raw):
    """Orthanc's explanation in the JSON error body ``raw``, as a sentence."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ''
    if not isinstance(body, dict):
        return ''
    reason = ': '.join(str(body[key]) for key in ('Message', 'Details') if body.get(key))
    return ' Orthanc says: %s.' % reason if reason else ''


def from_params(params, config):
    """The REST client for the module options, with defaults taken from the configuration."""
    username, password = params.get('url_username'), params.get('url_password')
    if username is None:
        username, default_password = config.default_credentials()
        password = password if password is not None else default_password
    return OrthancRest(params.get('url') or config.default_url(), username, password,
                       params.get('validate_certs', True))
