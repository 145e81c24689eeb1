# Copyright (c) orthanc_ops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the benchmarks run once per number of instances share: their command line, and a work folder per
size, removed afterwards with the Orthanc it holds stopped."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile


def parser(description, repeat):
    """The common options: --collections, --instances (several sizes), --pixels, --repeat, --cold."""
    arguments = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument('--collections', required=True, help='folder holding ansible_collections/orthanc_ops/backup')
    arguments.add_argument('--instances', type=int, nargs='+', default=[20000])
    arguments.add_argument('--pixels', type=int, default=96, help='image side in pixels (file size ~ pixels^2 bytes)')
    arguments.add_argument('--repeat', type=int, default=repeat, help='runs of each case; medians are printed')
    arguments.add_argument('--cold', action='store_true',
                           help='empty the page cache before every timed step (needs root): for trees larger than '
                                'the memory, where a warm cache would favour whichever step runs second')
    return arguments


def each_size(instances, run):
    """``run(count, work)`` for each count, in a new work folder; its Orthanc (``work/orthanc``) is stopped and
    the folder removed afterwards, whatever happened."""
    for count in instances:
        work = tempfile.mkdtemp(prefix='orthanc-bench-')
        try:
            run(count, work)
        finally:
            pidfile = os.path.join(work, 'orthanc', 'orthanc.pid')
            if os.path.exists(pidfile):
                subprocess.run(['start-stop-daemon', '--stop', '--quiet', '--retry', 'TERM/30/KILL/5', '--pidfile',
                                pidfile], check=False)
            shutil.rmtree(work, ignore_errors=True)
