"""The progress bar of long dumps and restores: pages done of pages to do,
shown on a terminal only, and only once the work has taken a second."""

import sys


def progress_bar(total_pages, enabled, what):
    from tqdm import tqdm
    return tqdm(total=total_pages, unit="page", unit_scale=True, delay=1, leave=False,
                desc=what, file=sys.stderr, disable=not (enabled and sys.stderr.isatty()))
