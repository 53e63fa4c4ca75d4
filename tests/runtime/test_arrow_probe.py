"""`clsrun predict` keeps pyarrow from importing pandas, and pandas still works for whoever imports it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120
    )


def test_predict_scores_a_file_with_nulls_without_importing_pandas(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("id,text\n1,很好\n2,\n3,太差了\n", encoding="utf-8")  # an empty text: a null in Arrow
    out = tmp_path / "out.csv"
    done = _run(
        f"""
        import atexit, sys
        atexit.register(lambda: print("pandas imported:", "pandas" in sys.modules, flush=True))
        sys.argv = ["clsrun", "predict", {str(data)!r}, "--out", {str(out)!r}, "--quiet"]
        from clsrun.__main__ import main
        main()
        """
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "pandas imported: False"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4


def test_after_the_probe_pyarrow_still_converts_and_pandas_still_works() -> None:
    done = _run(
        """
        import sys
        import numpy as np, pyarrow as pa, pyarrow.compute as pc
        from clsrun.runtime.arrow_probe import answer_pandas_probe
        print(answer_pandas_probe(), "pandas" in sys.modules)
        arr = pa.array([1, None, 3])
        print(pc.fill_null(arr, 0).to_pylist(), arr.to_numpy(zero_copy_only=False).tolist()[::2])
        print("pandas" in sys.modules)
        try:
            import pandas as pd
        except ImportError:
            print("no pandas here")
        else:
            print(pa.Table.from_pandas(pd.DataFrame({"a": [1, 2]})).to_pandas()["a"].tolist())
        print(answer_pandas_probe())  # pandas imported now: nothing to do
        """
    )
    assert done.returncode == 0, done.stderr[-500:]
    lines = done.stdout.splitlines()
    assert lines[:3] == ["True False", "[1, 0, 3] [1.0, 3.0]", "False"]
    assert lines[3] in ("[1, 2]", "no pandas here")
    assert lines[4] == ("False" if lines[3] == "[1, 2]" else "True")
