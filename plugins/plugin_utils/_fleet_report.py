# -*- coding: utf-8 -*-
# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report, built on the controller from the outcome each host recorded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ansible_collections.orthanc_ops.backup.plugins.module_utils._repository import ID_FORMAT

# Failed hosts first; 'incomplete' is a backup made with files missing from the live storage
# (allow_missing_files), 'planned' a check-mode run's outcome.
STATUS_ORDER = {'failed': 0, 'incomplete': 1, 'skipped': 2, 'planned': 3, 'ok': 4}


def backup_time(backup_id):
    return datetime.strptime(backup_id, ID_FORMAT).replace(tzinfo=timezone.utc)


# Every row has every column; what a host did not get to (a skipped or unreachable host) is None.
COLUMNS = ('host', 'instance', 'status', 'error', 'backend', 'backup_id', 'authenticated', 'size_bytes', 'new_bytes',
           'shipped_bytes', 'sent_bytes', 'downtime_seconds', 'duration_seconds', 'live_missing',
           'missing_attachments', 'md5_mismatches', 'verification', 'last_good_backup', 'offsite', 'offsite_backup',
           'offsite_bytes_added', 'last_drill', 'last_passed_drill', 'copies_elsewhere', 'disappeared', 'changed_backups',
           'new_bytes_jump')


def _size(value):
    """Bytes as a person reads them: 1.5 GiB."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (value, unit)
        value /= 1024.0


def _mark_title(run):
    """What hovering a run's mark says: when, how it went, how long it took and paused, and the backup's size."""
    words = ['%s %s' % (run['started'], run['status'])]
    if run.get('duration_seconds') is not None:
        words.append('%g s' % run['duration_seconds'])
    if run.get('pause_seconds') is not None:
        words.append('paused %g s' % run['pause_seconds'])
    if run.get('bytes') is not None:
        words.append('%s (%s new)' % (_size(run['bytes']), _size(run.get('new_bytes') or 0)))
    if run.get('error'):
        words.append(run['error'])
    return ', '.join(words)


def history(runs, now, days):
    """A host's runs of the last ``days`` days drawn as the report does: marks of its status strip (``x``, the run's
    place in the window from 0 to 1, its ``status`` and ``title``) and the sizes of its backups (``x``, ``size`` and
    ``new`` from 0 to 1 of the largest backup), oldest first. Runs that are not well formed are left out."""
    start = now - timedelta(days=days)
    placed = []
    for run in runs if isinstance(runs, list) and days > 0 else []:
        try:
            moment = backup_time(run['started'])
        except (TypeError, KeyError, ValueError):
            continue
        if start <= moment <= now:
            placed.append(((moment - start).total_seconds() / (now - start).total_seconds(), run))
    placed.sort(key=lambda item: item[0])
    largest = max([run.get('bytes') or 0 for dummy, run in placed] + [1])
    marks = [{'x': round(x, 4), 'status': run.get('status'), 'title': _mark_title(run)} for x, run in placed]
    sizes = [{'x': round(x, 4), 'size': round((run['bytes'] or 0) / largest, 4),
              'new': round((run.get('new_bytes') or 0) / largest, 4)} for x, run in placed if run.get('bytes')]
    return {'days': days, 'runs': len(marks), 'marks': marks, 'sizes': sizes,
            'largest_bytes': largest if sizes else None, 'largest': _size(largest) if sizes else None}


def _age_hours(backup_id, now):
    return round((now - backup_time(backup_id)).total_seconds() / 3600, 2) if backup_id else None


def row(outcome, rpo_hours, now, drill_max_age_days=0, history_days=0):
    """One host's row: its outcome plus the age of its last good backup and whether it is past the RPO, for a
    host with an off-site repository the same of its newest off-site copy, and when drills are required
    (``drill_max_age_days``) the age of its last passed drill and whether it is overdue."""
    result = dict.fromkeys(COLUMNS)
    result.update(outcome)
    age_hours = _age_hours(outcome.get('last_good_backup'), now)
    offsite_age_hours = _age_hours(outcome.get('offsite_backup'), now)
    drill_age_hours = _age_hours((outcome.get('last_passed_drill') or {}).get('drilled_at'), now)
    result.update(age_hours=age_hours, past_rpo=age_hours is None or age_hours > rpo_hours,
                  offsite_age_hours=offsite_age_hours,
                  offsite_past_rpo=bool(outcome.get('offsite')) and (offsite_age_hours is None
                                                                     or offsite_age_hours > rpo_hours),
                  drill_age_days=None if drill_age_hours is None else round(drill_age_hours / 24, 2),
                  drill_overdue=drill_max_age_days > 0 and (drill_age_hours is None
                                                            or drill_age_hours > drill_max_age_days * 24),
                  history=history(outcome.get('history'), now, history_days))
    return result


NO_OUTCOME = 'no outcome: the host was unreachable, or the run stopped before it'


def reasons(item, rpo_hours):
    """What needs attention in a host's row, in words, most urgent first."""
    found = []
    if item['status'] == 'failed':
        found.append('backup failed')
    if item['status'] == 'incomplete':
        found.append('files missing from its storage')
    if item['past_rpo']:
        found.append('no good backup within %s h' % ('%g' % rpo_hours))
    if item['disappeared']:
        found.append('backups gone outside retention')
    if item['changed_backups']:
        found.append('backups changed after they were taken')
    if item['new_bytes_jump']:
        found.append('new bytes jumped')
    if item['offsite_past_rpo']:
        found.append('off-site copy older than %s h' % ('%g' % rpo_hours))
    if (item['last_drill'] or {}).get('passed') is False:
        found.append('last drill failed')
    elif item['drill_overdue']:
        found.append('drill overdue')
    if item['copies_elsewhere'] is False:
        found.append('only local copies')
    return found


def attention(rows, rpo_hours):
    """One sentence saying which hosts need attention and why, as a notification can send it as is."""
    needing = [(item['host'], item['attention']) for item in rows if item['attention']]
    if not needing:
        return 'All %d host(s) are fine: each has a good backup within the %s h RPO.' % (len(rows), '%g' % rpo_hours)
    return '%d of %d host(s) need attention: %s.' % (len(needing), len(rows), '; '.join(
        '%s (%s)' % (host, ', '.join(why)) for host, why in needing))


def build(outcomes, rpo_hours, now=None, drill_max_age_days=0, history_days=0):
    """The report from {host: outcome or None}: a summary and one row per host, hosts past the RPO (here or off
    site) first, then those that need attention otherwise; each with its runs of the last ``history_days`` days
    (see history). A host without an outcome never got to record one: it failed."""
    now = now or datetime.now(timezone.utc)
    outcomes = [outcome or {'host': host, 'status': 'failed', 'error': NO_OUTCOME}
                for host, outcome in outcomes.items()]
    rows = [row(outcome, rpo_hours, now, drill_max_age_days, history_days) for outcome in outcomes]
    for item in rows:
        item['attention'] = reasons(item, rpo_hours)
    rows.sort(key=lambda item: (not (item['past_rpo'] or item['offsite_past_rpo']), not item['attention'],
                                STATUS_ORDER.get(item['status'], 0), item['host']))
    count = dict((status, sum(1 for item in rows if item['status'] == status)) for status in STATUS_ORDER)
    summary = {
        'attention': attention(rows, rpo_hours),
        'hosts': len(rows),
        'ok': count['ok'],
        'failed': count['failed'],
        'incomplete': count['incomplete'],
        'skipped': count['skipped'],
        'planned': count['planned'],
        'past_rpo': sorted(item['host'] for item in rows if item['past_rpo']),
        'offsite_past_rpo': sorted(item['host'] for item in rows if item['offsite_past_rpo']),
        'drill_overdue': sorted(item['host'] for item in rows if item['drill_overdue']),
        'drill_failed': sorted(item['host'] for item in rows if (item['last_drill'] or {}).get('passed') is False),
        # Neither a backup host nor an off-site repository: the copies go with the host (ransomware, fire).
        'only_local': sorted(item['host'] for item in rows if item['copies_elsewhere'] is False),
        # Backups gone although retention keeps them: removed by a person, ransomware or a failing disk.
        'disappeared': sorted(item['host'] for item in rows if item['disappeared']),
        'changed_backups': sorted(item['host'] for item in rows if item['changed_backups']),
        'new_bytes_jump': sorted(item['host'] for item in rows if item['new_bytes_jump']),
        'failed_hosts': sorted(item['host'] for item in rows if item['status'] == 'failed'),
        'incomplete_hosts': sorted(item['host'] for item in rows if item['status'] == 'incomplete'),
        'bytes': sum(item.get('size_bytes') or 0 for item in rows),
        'new_bytes': sum(item.get('new_bytes') or 0 for item in rows),
        'shipped_bytes': sum(item.get('shipped_bytes') or 0 for item in rows),
    }
    return {'generated': now.strftime('%Y-%m-%dT%H:%M:%SZ'), 'rpo_hours': rpo_hours,
            'drill_max_age_days': drill_max_age_days, 'history_days': history_days,
            'summary': summary, 'hosts': rows}
