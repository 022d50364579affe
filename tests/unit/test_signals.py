"""signals.deferred: a signal inside a section that must finish waits for its end."""

from __future__ import annotations

import signal

import pytest

from opskit import errors, signals


@pytest.fixture(autouse=True)
def fresh_signal_state(monkeypatch):
    """No deferred section open and no signal pending; the process's handlers restored after."""
    monkeypatch.setattr(signals, "_depth", 0)
    monkeypatch.setattr(signals, "_pending", None)
    saved = {signum: signal.getsignal(signum) for signum in signals.HANDLED}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def arrive(signum: int = signal.SIGINT) -> None:
    """A signal arriving now, as the installed handler sees it."""
    signals.handle(signum, None)


def test_handle_raises_interrupted_outside_a_deferred_section():
    with pytest.raises(errors.Interrupted) as raised:
        arrive(signal.SIGTERM)

    assert raised.value.signal_name == "SIGTERM"


def test_deferred_runs_the_block_to_its_end_before_raising():
    finished = []

    with pytest.raises(errors.Interrupted):
        with signals.deferred():
            arrive()
            finished.append(True)

    assert finished == [True]


def test_deferred_reraises_the_signal_by_default():
    with pytest.raises(errors.Interrupted) as raised:
        with signals.deferred():
            arrive(signal.SIGHUP)

    assert raised.value.signal_name == "SIGHUP"


def test_deferred_raises_nothing_without_a_signal():
    with signals.deferred() as caught:
        pass

    assert caught.signal_name is None


def test_deferred_with_reraise_false_records_the_signal_and_does_not_raise():
    with signals.deferred(reraise=False) as caught:
        arrive(signal.SIGTERM)

    assert caught.signal_name == "SIGTERM"


def test_deferred_with_reraise_false_records_nothing_without_a_signal():
    with signals.deferred(reraise=False) as caught:
        pass

    assert caught.signal_name is None


def test_deferred_keeps_the_last_of_several_signals():
    with signals.deferred(reraise=False) as caught:
        arrive(signal.SIGINT)
        arrive(signal.SIGTERM)

    assert caught.signal_name == "SIGTERM"


def test_deferred_answers_the_signal_only_once():
    with signals.deferred(reraise=False):
        arrive()

    with signals.deferred() as later:
        pass

    assert later.signal_name is None


def test_deferred_nested_waits_for_the_outermost_section():
    after_inner = []

    with pytest.raises(errors.Interrupted):
        with signals.deferred():
            with signals.deferred():
                arrive()
            after_inner.append(True)

    assert after_inner == [True]


def test_deferred_nested_with_reraise_false_records_in_the_outermost_section():
    with signals.deferred(reraise=False) as outer:
        with signals.deferred(reraise=False) as inner:
            arrive()

    assert (inner.signal_name, outer.signal_name) == (None, "SIGINT")


def test_deferred_nested_in_a_reraising_section_raises_after_the_outer_one():
    with pytest.raises(errors.Interrupted):
        with signals.deferred():
            with signals.deferred(reraise=False) as inner:
                arrive()

    assert inner.signal_name is None


def test_deferred_lets_an_exception_of_the_block_through():
    with pytest.raises(errors.OpskitError, match="swap failed"):
        with signals.deferred(reraise=False):
            arrive()
            raise errors.OpskitError("swap failed")


def test_deferred_forgets_a_signal_whose_section_ended_with_an_exception():
    # Otherwise a later, unrelated section (restarting stopped containers, taking a lock)
    # raises the stale signal and its message replaces the real error's.
    with pytest.raises(errors.OpskitError):
        with signals.deferred(reraise=False):
            arrive()
            raise errors.OpskitError("swap failed")

    with signals.deferred() as later:
        pass

    assert later.signal_name is None


def test_handle_raises_again_once_the_section_is_over():
    with signals.deferred(reraise=False):
        pass

    with pytest.raises(errors.Interrupted):
        arrive()


def test_install_makes_a_real_signal_wait_for_the_section():
    signals.install()

    with signals.deferred(reraise=False) as caught:
        signal.raise_signal(signal.SIGTERM)

    assert caught.signal_name == "SIGTERM"


def test_install_makes_a_real_signal_raise_interrupted():
    signals.install()

    with pytest.raises(errors.Interrupted):
        signal.raise_signal(signal.SIGHUP)
