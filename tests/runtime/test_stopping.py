"""SIGINT/SIGTERM: noted after install(), raised as Stop inside raising(), a polled request inside cooperative()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from clsrun.runtime import sigaction, stopping


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60
    )


def test_inside_cooperative_a_signal_only_sets_the_request() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stopping.cooperative() as request:
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.event.wait(5)
        assert request.signum == signal.SIGTERM and request.name == "SIGTERM"
        assert request.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"
    with (
        stopping.cooperative() as fresh
    ):  # outside install(): a stop honoured once does not stop the next run
        assert not fresh.is_set()


def test_inside_raising_a_signal_raises_stop() -> None:
    with pytest.raises(stopping.Stop) as caught, stopping.raising():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # let the handler run
    assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
    assert not caught.value.early


def test_a_library_that_takes_sigterm_inside_kept_gives_it_back() -> None:
    """As ray.init does (SIGTERM -> sys.exit(15)): after it, a SIGTERM is clsrun's stop again."""
    with stopping.cooperative() as request:
        with stopping.kept():
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.event.wait(5) and request.exit_code == 143
    outside = signal.getsignal(signal.SIGTERM)
    with stopping.kept():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is outside  # not ours either: whatever was there comes back


def test_after_install_a_signal_is_noted_then_raised_where_the_code_allows() -> None:
    done = _run(
        """
        import os, signal, time
        from clsrun.runtime import stopping
        request = stopping.install()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # a stop during start-up imports: noted, nothing raised
        print("noted", request.signum == signal.SIGTERM, flush=True)
        with stopping.cooperative() as same:
            print("cooperative sees it", same.is_set(), flush=True)
        try:
            with stopping.raising():
                print("never here", flush=True)
        except stopping.Stop as e:
            print("raised at once", e.signum == signal.SIGTERM and e.early, flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["noted True", "cooperative sees it True", "raised at once True"]


def test_a_second_signal_takes_the_default_action_at_once() -> None:
    done = _run(
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
    assert done.stdout == "first signal noted\n"
    assert done.returncode == -signal.SIGTERM


def test_once_the_command_returned_a_late_signal_cannot_turn_its_exit_into_a_death() -> None:
    """Python restores SIGTERM's default late in its shutdown; the entry point ignores it before that (a
    handler run on the way out, as a library's clean-up would be, sees them ignored and sends SIGTERM)."""
    done = _run(
        """
        import atexit, os, signal, sys
        from clsrun.__main__ import main

        def late() -> None:
            ignored = [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGINT)]
            print(*ignored, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: the process still exits 0

        atexit.register(late)
        sys.argv = ["clsrun", "--help"]
        main()
        """
    )
    assert done.stdout.split()[-2:] == ["True", "True"], done.stderr
    assert done.returncode == 0


def test_a_signal_during_a_pyarrow_read_is_only_noted() -> None:
    """pyarrow cancels its own long reads on SIGTERM (ArrowCancelled) unless told not to."""
    done = _run(
        """
        import io, os, signal, threading, time
        import pyarrow as pa, pyarrow.csv as pacsv
        from clsrun.runtime import stopping
        data = ("a,b\\n" + "".join(f"{i},text {i}\\n" for i in range(300_000))).encode()
        with stopping.cooperative() as request:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                pacsv.read_csv(io.BytesIO(data))
            print("noted", request.is_set(), flush=True)
        """
    )
    assert done.stdout.strip() == "noted True", done.stderr[-500:]
    assert done.returncode == 0


@pytest.mark.skipif(
    sigaction._LIBC is None, reason="handler flags are rewritten on Linux x86-64 and arm64 only"
)
@pytest.mark.parametrize("section", ["cooperative", "raising", "install"])
def test_a_signal_is_handled_even_when_a_library_left_a_freed_alternate_signal_stack(section: str) -> None:
    """OpenVINO's CPU plugin can leave the main thread's alternate signal stack pointing at freed memory;
    Python's handlers run on that stack by default, so a SIGTERM was a segmentation fault."""
    done = _run(
        f"""
        import ctypes, mmap, os, signal, time
        from clsrun.runtime import stopping

        class Stack(ctypes.Structure):
            _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

        region = mmap.mmap(-1, 1 << 16)
        address = ctypes.addressof(ctypes.c_char.from_buffer(region))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.sigaltstack(ctypes.byref(Stack(address, 0, 1 << 16)), None) == 0
        region.close()  # unmapped: a signal frame built there faults

        section = "{section}"
        if section == "install":
            request = stopping.install()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            print("noted", request.is_set(), flush=True)
        elif section == "cooperative":
            with stopping.cooperative() as request:
                os.kill(os.getpid(), signal.SIGTERM)
                print("noted", request.event.wait(5), flush=True)
        else:
            try:
                with stopping.raising():
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)
            except stopping.Stop:
                print("noted True", flush=True)
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "noted True", (done.returncode, done.stderr[-500:])


def test_a_stop_python_drops_in_a_callback_is_silent_and_honoured_at_the_next_safe_point() -> None:
    """A signal handled while a ``__del__`` (or a garbage-collector callback) runs raises Stop there, where
    Python drops it and prints "Exception ignored in ... Stop: SIGTERM": the run went on, the signal lost."""
    done = _run(
        """
        import os, signal
        from clsrun.runtime import stopping

        class Dropper:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                signal.sigtimedwait([], 0)  # the handler runs here, inside __del__

        with stopping.raising():
            d = Dropper()
            del d
            print("went on")
            try:
                stopping.honour()
            except stopping.Stop as e:
                print("honoured", e.signum)
        """
    )
    assert done.stdout.split("\n")[:2] == ["went on", f"honoured {int(signal.SIGTERM)}"], done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr


def test_a_shielded_block_notes_a_stop_and_raises_it_as_it_ends_or_not_at_all() -> None:
    steps: list[str] = []
    with pytest.raises(stopping.Stop), stopping.raising():
        with stopping.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)
            steps.append("both steps done")
        steps.append("never")
    assert steps == ["both steps done"]
    with stopping.raising() as request:
        with stopping.shielded(then_raise=False):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)
        steps.append("completed")
        assert request.is_set()
    assert steps[-1] == "completed"
