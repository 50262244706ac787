"""AIO contexts come back at their addresses, with their completed events
and the kernel's completion position (head, tail), as with criu."""

from conftest import checkpoint_restore


def test_an_aio_context_with_events_not_read(start_target, tmp_path):
    t = start_target("aioring")
    checkpoint_restore(t, tmp_path / "images")
    t.check()
