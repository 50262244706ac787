"""Files of the tree's own /proc/PID directories, held open across a dump."""

from conftest import checkpoint_restore


def test_proc_files_of_the_tree_name_the_restored_processes(start_target, tmp_path):
    t = start_target("procfiles")
    checkpoint_restore(t, tmp_path / "images")
    t.check()
