"""Owner labels recognise a live process, a dead one, a reused pid and other hosts."""

import os
import subprocess

from opskit import process_owner


def test_owner_is_alive_for_this_process():
    assert process_owner.owner_is_alive(process_owner.owner_label())


def test_owner_is_alive_false_for_a_finished_process():
    child = subprocess.Popen(["true"])
    label = f"{process_owner.owner_label().split(':')[0]}:{child.pid}:"
    label += process_owner.process_start_ticks(child.pid)
    child.wait()
    assert not process_owner.owner_is_alive(label)


def test_owner_is_alive_false_for_a_reused_pid():
    host = process_owner.owner_label().split(":")[0]
    assert not process_owner.owner_is_alive(f"{host}:{os.getpid()}:1")


def test_owner_is_alive_true_for_other_hosts_and_unknown_labels():
    assert process_owner.owner_is_alive("another-host:1:1")
    assert process_owner.owner_is_alive("garbage")
