"""Owner labels recognise a live process, a dead one, a reused pid and other hosts."""

import os
import subprocess
import time

from opskit import process_owner


def test_owner_is_alive_for_this_process():
    assert process_owner.owner_is_alive(process_owner.owner_label())


def _label_of(pid: int) -> str:
    host = process_owner.owner_label().split(":")[0]
    return f"{host}:{pid}:{process_owner.process_start_ticks(pid)}"


def test_owner_is_alive_false_for_a_finished_process():
    child = subprocess.Popen(["true"])
    label = _label_of(child.pid)  # often taken when `true` has exited already: a zombie
    child.wait()

    assert not label.endswith(":"), "a zombie's start time must still be read"
    assert not process_owner.owner_is_alive(label)


def test_owner_is_alive_false_for_a_zombie():
    child = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    try:
        label = _label_of(child.pid)
        assert process_owner.owner_is_alive(label)
        child.stdin.close()  # cat exits; until it is reaped it is a zombie
        deadline = time.monotonic() + 10
        while _state_of(child.pid) != "Z":
            assert time.monotonic() < deadline, "cat did not exit"
            time.sleep(0.01)

        assert process_owner.process_start_ticks(child.pid) == label.rsplit(":", 1)[1]
        assert not process_owner.owner_is_alive(label)
    finally:
        child.kill()
        child.wait()


def _state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_owner_is_alive_false_for_a_reused_pid():
    host = process_owner.owner_label().split(":")[0]
    assert not process_owner.owner_is_alive(f"{host}:{os.getpid()}:1")


def test_owner_is_alive_true_for_other_hosts_and_unknown_labels():
    assert process_owner.owner_is_alive("another-host:1:1")
    assert process_owner.owner_is_alive("garbage")
