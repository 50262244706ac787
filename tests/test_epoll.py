"""epoll instances: every watch comes back keyed by its fd number, with
its events and data, one-shot watches still disarmed, shared by the
processes that share the instance (resources/files/epoll.py)."""

import pytest

from conftest import dump_and_kill, restore
from hiber.images.imagedir import ImageDir

pytestmark = pytest.mark.timeout(120)


def test_epoll_watches_come_back(start_target, tmp_path):
    t = start_target("epolls")
    images = tmp_path / "images"
    dump_and_kill(t, images)
    instances = [e.epfd for e in ImageDir(images).read_optional("FILES") if e.HasField("epfd")]
    assert sorted(len(i.tfd) for i in instances) == [1, 7]
    restore(images)
    t.check()
