# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Orthanc's REST API through ansible.module_utils.urls."""

from __future__ import annotations

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

PROBE_TIMEOUT = 2
POLL_INTERVAL = 0.05


class OrthancRest:
    def __init__(self, url, username=None, password=None, validate_certs=True):
        self.url = url.rstrip('/')
        self.username = username
        self.password = password
        self.validate_certs = validate_certs

    def _open(self, path, method='GET', data=None, timeout=30):
        return open_url(self.url + path, method=method, data=data, timeout=timeout,
                        url_username=self.username, url_password=self.password,
                        force_basic_auth=self.username is not None,
                        validate_certs=self.validate_certs,
                        headers={'Accept': 'application/json'})

    def get(self, path, timeout=30):
        """GET a JSON document; raise OrthancOpsError with the reason on failure."""
        try:
            with self._open(path, timeout=timeout) as response:
                return json.loads(response.read())
        except HTTPError as exc:
            hint = (' Check url_username and url_password (or RegisteredUsers in the configuration).'
                    if exc.code in (401, 403) else '')
            raise OrthancOpsError('Orthanc at %s answered %s to GET %s.%s' % (self.url, exc.code, path, hint))
        except (URLError, OSError, ValueError) as exc:
            raise OrthancOpsError('Orthanc at %s does not answer GET %s: %s. Check "url" and that Orthanc runs.'
                                  % (self.url, path, getattr(exc, 'reason', exc)))

    def answers(self):
        """True when an HTTP server answers at the URL (any status: 401 still means Orthanc is up)."""
        try:
            with self._open('/system', timeout=PROBE_TIMEOUT):
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


def from_params(params, config):
    """The REST client for the module options, with defaults taken from the configuration."""
    username, password = params.get('url_username'), params.get('url_password')
    if username is None:
        username, default_password = config.default_credentials()
        password = password if password is not None else default_password
    return OrthancRest(params.get('url') or config.default_url(), username, password,
                       params.get('validate_certs', True))
