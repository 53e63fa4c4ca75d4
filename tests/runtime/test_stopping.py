"""SIGINT/SIGTERM: raised as Stop outside cooperative sections, a polled request inside them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from clsrun.runtime import stopping


def test_inside_cooperative_a_signal_only_sets_the_request() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stopping.cooperative() as request:
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.event.wait(5)
        assert request.signum == signal.SIGTERM and request.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


def test_install_turns_sigterm_into_stop() -> None:
    previous = {s: signal.getsignal(s) for s in stopping.SIGNALS}
    try:
        stopping.install()
        with pytest.raises(stopping.Stop) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run
        assert caught.value.signum == signal.SIGTERM
        assert isinstance(caught.value, KeyboardInterrupt)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def test_a_second_signal_takes_the_default_action_at_once() -> None:
    script = textwrap.dedent(
        """
        import os, signal, time
        from clsrun.runtime import stopping
        with stopping.cooperative() as request:
            os.kill(os.getpid(), signal.SIGTERM)
            request.event.wait(5)
            print("first signal noted", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("still alive")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "first signal noted\n"
    assert done.returncode == -signal.SIGTERM
