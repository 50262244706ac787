"""--action-script: the user's scripts, run at the moments criu runs them.

Each script is run with no arguments and criu's environment variables:
CRTOOLS_SCRIPT_ACTION (the moment's name), CRTOOLS_IMAGE_DIR (the images
directory) and CRTOOLS_INIT_PID (the root process, once there is one).
What a script's failure means depends on the moment, as with criu:
pre-dump, pre-restore and post-restore failures abort; a post-dump failure
fails the dump but lets the tree run on (a migration script saying "don't
kill it"); pre-resume and post-resume failures are only logged.
"""

import logging
import os
import subprocess

from .errors import HiberError

log = logging.getLogger(__name__)

PRE_DUMP = "pre-dump"
POST_DUMP = "post-dump"
PRE_RESTORE = "pre-restore"
POST_RESTORE = "post-restore"
PRE_RESUME = "pre-resume"
POST_RESUME = "post-resume"


class ActionScriptFailed(HiberError):
    def __init__(self, action, script, status):
        self.action = action
        self.status = status
        how = f"exited with {status}" if status >= 0 else f"was killed by signal {-status}"
        super().__init__(f"the {action} action script {script} {how}")


class ActionScripts:
    """The scripts of --action-script, in the order given."""

    def __init__(self, paths, images_dir, notify=None):
        self.paths = list(paths or ())
        self.notify = notify  # the RPC client's hooks (service/protocol.py)
        self.images_dir = os.path.abspath(images_dir)
        for path in self.paths:
            if not os.access(path, os.X_OK):
                raise HiberError(f"--action-script {path}: not an executable file")

    def run(self, action, root_pid=None, must_succeed=True):
        """Run every script for ``action``; the first failure raises
        ActionScriptFailed (or is logged, when must_succeed is false)."""
        if self.notify is not None and not self.notify(action, root_pid):
            failure = ActionScriptFailed(action, "hook of the RPC client", 1)
            if must_succeed:
                raise failure
            log.error("%s", failure)
        if not self.paths:
            return
        env = dict(os.environ, CRTOOLS_SCRIPT_ACTION=action,
                   CRTOOLS_IMAGE_DIR=self.images_dir)
        if root_pid is not None:
            env["CRTOOLS_INIT_PID"] = str(root_pid)
        for path in self.paths:
            log.info("Running the %s action script %s", action, path)
            status = subprocess.run([path], env=env, stdin=subprocess.DEVNULL).returncode
            if status != 0:
                failure = ActionScriptFailed(action, path, status)
                if must_succeed:
                    raise failure
                log.error("%s", failure)
