"""Every criu option hiber takes is honoured or refused with one line:
none is accepted and then silently ignored."""

import os
import signal

import pytest

from conftest import reap_orphans, run_hiber
from hiber.cli import PERMISSIONS, REFUSED, main
from hiber.kernel import proc

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("flag", sorted(REFUSED))
def test_refused_option_says_so_in_one_line(tmp_path, capsys, flag):
    # in-process: the same main() the hiber command runs, without 60 start-ups
    nargs, _ = REFUSED[flag]
    for verb in ("dump", "restore"):
        args = [verb, "-D", str(tmp_path), *(["-t", "1"] if verb == "dump" else []), flag]
        if nargs:
            args.append("/somewhere")
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err and "not supported" in err, err


def test_refusal_is_one_line_and_exit_1_from_the_command(tmp_path):
    result = run_hiber("dump", "-t", os.getpid(), "-D", tmp_path, "--status-fd", "3")
    err = result.stderr.decode().strip()
    assert result.returncode == 1 and err.count("\n") == 0 and "--status-fd" in err


def test_root_slash_is_honoured_and_other_roots_refused(tmp_path, capsys):
    assert main(["restore", "-D", str(tmp_path), "--root", "/tmp"]) == 1
    assert "--root" in capsys.readouterr().err
    main(["restore", "-D", str(tmp_path), "--root", "/"])  # fails later: no images there
    assert "--root" not in capsys.readouterr().err


def test_permissions_change_nothing_without_the_state(start_target, tmp_path):
    t = start_target("simple")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "-R", *PERMISSIONS,
                       "--ext-unix-sk", "--network-lock", "nftables",
                       "--pre-dump-mode", "splice",  # zdtm passes these two on every dump
                       "--pidfile", tmp_path / "dump.pid")
    assert result.returncode == 0, result.stderr.decode()
    assert t.alive()
    assert not (tmp_path / "dump.pid").exists()


def _recording_script(tmp_path, log, status_for=None, status=3):
    script = tmp_path / "action.sh"
    fail = (f'[ "$CRTOOLS_SCRIPT_ACTION" = "{status_for}" ] && exit {status}\n'
            if status_for else "")
    script.write_text("#!/bin/sh\n"
                      f'echo "$CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID $CRTOOLS_IMAGE_DIR" >> {log}\n'
                      + fail + "exit 0\n")
    script.chmod(0o755)
    return script


def test_action_scripts_run_at_criu_moments(start_target, tmp_path):
    t = start_target("simple")
    log = tmp_path / "actions.log"
    script = _recording_script(tmp_path, log)
    images = tmp_path / "images"
    result = run_hiber("dump", "-t", t.pid, "-D", images, "--action-script", script)
    assert result.returncode == 0, result.stderr.decode()
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    result = run_hiber("restore", "-D", images, "-d", "--action-script", script)
    assert result.returncode == 0, result.stderr.decode()
    try:
        lines = [line.split() for line in log.read_text().splitlines()]
        assert [line[0] for line in lines] == ["pre-dump", "post-dump", "pre-restore",
                                               "post-restore", "pre-resume", "post-resume"]
        assert lines[0][1:] == [str(t.pid), str(images)]
        assert lines[2][1:] == [str(images)]  # no root process yet
        assert all(line[1:] == [str(t.pid), str(images)] for line in lines[3:])
        t.check()
    finally:
        t.stop()


def test_failing_post_dump_script_lets_the_tree_run_on(start_target, tmp_path):
    t = start_target("simple")
    script = _recording_script(tmp_path, tmp_path / "actions.log", "post-dump")
    result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images", "--action-script",
                       script)
    err = result.stderr.decode()
    assert result.returncode == 1 and "post-dump action script" in err and "exited with 3" in err
    assert t.alive() and proc.status(t.pid)["TracerPid"] == "0"


def test_failing_post_restore_script_leaves_nothing(start_target, tmp_path):
    t = start_target("simple")
    images = tmp_path / "images"
    assert run_hiber("dump", "-t", t.pid, "-D", images).returncode == 0
    assert t.wait(10) == -signal.SIGKILL
    reap_orphans()
    script = _recording_script(tmp_path, tmp_path / "actions.log", "post-restore")
    result = run_hiber("restore", "-D", images, "-d", "--action-script", script)
    assert result.returncode == 1 and "post-restore" in result.stderr.decode()
    reap_orphans()
    assert not proc.exists(t.pid)
