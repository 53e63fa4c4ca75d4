"""The ``clsrun`` process ends without the interpreter's teardown, and loses nothing by it: exit codes,
buffered output and ``atexit`` handlers are as ``sys.exit`` leaves them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60
    )


def test_exit_now_keeps_the_code_buffered_output_and_atexit_handlers(tmp_path: Path) -> None:
    marker = tmp_path / "atexit-ran"
    done = _run(f"""
        import atexit, sys
        from pathlib import Path
        from clsrun.__main__ import exit_now
        atexit.register(lambda: Path({str(marker)!r}).write_text("yes"))
        sys.stdout.write("no newline, still buffered")
        exit_now(3)
        print("never")
    """)
    assert done.returncode == 3
    assert done.stdout == "no newline, still buffered"
    assert marker.read_text() == "yes"


def test_exit_now_waits_the_usual_way_for_a_non_daemon_thread(tmp_path: Path) -> None:
    marker = tmp_path / "thread-finished"
    done = _run(f"""
        import threading, time
        from pathlib import Path
        from clsrun.__main__ import exit_now
        def work():
            time.sleep(0.5)
            Path({str(marker)!r}).write_text("yes")
        threading.Thread(target=work).start()
        exit_now(0)
    """)
    assert done.returncode == 0 and marker.read_text() == "yes"


def test_exit_now_with_a_message_prints_it_as_sys_exit_does() -> None:
    done = _run("""
        from clsrun.__main__ import exit_now
        exit_now("cannot go on")
    """)
    assert done.returncode == 1 and done.stderr.strip() == "cannot go on"


def test_the_console_command_exits_with_its_commands_code(tmp_path: Path) -> None:
    missing = _run(f"""
        import sys
        sys.argv = ["clsrun", "predict", {str(tmp_path / "absent.csv")!r}]
        from clsrun.__main__ import main
        main()
    """)
    assert missing.returncode == 2 and "file not found" in missing.stderr
    version = _run("""
        import sys
        sys.argv = ["clsrun", "--version"]
        from clsrun.__main__ import main
        main()
    """)
    assert version.returncode == 0 and version.stdout.startswith("clsrun ")


def test_a_result_on_stdout_that_could_not_be_written_fails_the_command(tmp_path: Path) -> None:
    """``clsrun eval B data --json > r.json`` on a full disk (or with stdout closed) left an empty r.json and
    exit 0; a reader that stopped reading (``| head``) is its own choice and changes nothing."""
    command = [sys.executable, "-m", "clsrun", "--version"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: stdout: no space left on device")
    closed = subprocess.run(
        [*command[:3], "--version"], stdout=None, stderr=subprocess.PIPE, text=True, timeout=60,
        preexec_fn=lambda: __import__("os").close(1),
    )  # fmt: skip
    assert closed.returncode == 1 and "it was closed when clsrun started" in closed.stderr
    head = subprocess.run(
        f"{sys.executable} -m clsrun --help | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert head.stdout.strip() == "0"
    fine = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert fine.returncode == 0 and fine.stderr == ""
