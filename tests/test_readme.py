"""The README's Python example runs as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has a Python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, str(README), "exec"), {})
    assert "USDT after" in capsys.readouterr().out
