# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Authenticated backups: an HMAC-SHA256 of a backup's manifest, made with a key that only the controller and
the Orthanc hosts hold (the ``backup_key`` option).

The manifest names its listings with their sizes and MD5s, and the listings name every file of the backup with
its size and MD5, each checked as it is read: so the HMAC of the manifest vouches for every byte of the backup.
Whoever can write a repository but does not hold the key (the Orthanc user, the account that receives fleet
copies, a holder of the off-site repository's password) can then make no backup that a module uses.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ansible_collections.orthanc_ops.backup.plugins.module_utils._errors import OrthancOpsError

ALGORITHM = 'hmac-sha256'
# The manifest's key that holds the seal: the HMAC is of every other key.
SEAL = 'authentication'
MIN_KEY_LENGTH = 16


def canonical(values):
    """The bytes the HMAC is of: the manifest's values but its seal, as one canonical JSON text."""
    return json.dumps(dict((key, value) for key, value in values.items() if key != SEAL), sort_keys=True,
                      separators=(',', ':')).encode()


class BackupKey:
    """The secret that signs manifests and checks them; ``key_id`` names it without revealing it."""

    def __init__(self, secret):
        if len(secret) < MIN_KEY_LENGTH:
            raise OrthancOpsError('backup_key has %d characters; give one of at least %d (the roles make one of 64).'
                                  % (len(secret), MIN_KEY_LENGTH))
        self._secret = secret.encode()
        self.key_id = hashlib.sha256(b'orthanc-ops backup key id\0' + self._secret).hexdigest()[:16]

    def _mac(self, values):
        return hmac.new(self._secret, canonical(values), hashlib.sha256).hexdigest()

    def seal(self, values):
        """``values`` with their seal."""
        return dict(values, **{SEAL: {'algorithm': ALGORITHM, 'key_id': self.key_id, 'hmac': self._mac(values)}})

    def snapshot_seal(self, instance, backup_id):
        """The seal of an off-site snapshot of backup ``backup_id`` of ``instance``: a tag a holder of the off-site
        password cannot make for a snapshot of their own."""
        message = b'orthanc-ops snapshot\0%s\0%s' % (instance.encode(), backup_id.encode())
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def problem(self, values):
        """Why the manifest ``values`` is not authenticated by this key, or None."""
        seal = values.get(SEAL)
        if not isinstance(seal, dict):
            return 'it is not signed'
        if seal.get('key_id') != self.key_id:
            return ('it is signed with another key (key id %s; this backup_key has id %s)'
                    % (seal.get('key_id'), self.key_id))
        if seal.get('algorithm') != ALGORITHM or not hmac.compare_digest(str(seal.get('hmac')), self._mac(values)):
            return 'its signature does not match its contents: it was changed after it was signed'
        return None


def from_params(params):
    """The BackupKey a module's ``backup_key`` option gives, or None."""
    return BackupKey(params['backup_key']) if params.get('backup_key') else None


def is_signed(values):
    return isinstance(values.get(SEAL), dict)
