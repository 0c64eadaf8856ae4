"""pipeline.teardown: a process that ran gates ends without tracing its whole heap again and
again, and still finalises what it would have."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_exit_finalises_garbage_cycles_then_freezes_the_rest(tmp_path):
    marker, frozen = tmp_path / "finalised", tmp_path / "frozen"
    script = textwrap.dedent(f"""
        import atexit, gc
        from pipeline.teardown import fast_interpreter_exit

        # Registered first, so it runs after the teardown's handler (atexit runs last-in first).
        atexit.register(lambda: open({str(frozen)!r}, "w").write(str(gc.get_freeze_count())))
        fast_interpreter_exit()
        fast_interpreter_exit()  # once per process, however often asked

        class Cycle:
            def __del__(self):
                open({str(marker)!r}, "w").write("flushed")

        gc.disable()  # the cycle stays garbage until exit
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        del a, b
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "flushed"  # the garbage cycle's finaliser ran before the freeze
    assert int(frozen.read_text()) > 1000  # the survivors were frozen: teardown skips them
    assert subprocess.run([sys.executable, "-c", "import atexit, pipeline.teardown as t; t.fast_interpreter_exit(); "
                           "print(atexit._ncallbacks())"], capture_output=True, text=True, timeout=60).stdout.strip() == "1"
