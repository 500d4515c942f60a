"""The wheel installs only the `tokentrail` namespace, and every part imports from it."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("tokentrail-*.whl")
    return built


def test_wheel_holds_only_the_tokentrail_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"tokentrail", next(t for t in top_level if t.endswith(".dist-info"))}
    assert "tokentrail/schema/migrations/0001_initial.sql" in names
    assert "tokentrail/schema/model_prices.json" in names


def test_wheel_installs_into_a_fresh_virtualenv_and_imports(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    # The fresh environment borrows this one's third-party packages (so the test
    # needs no network) but gets tokentrail only from the wheel.
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
        check=True,
        timeout=300,
    )
    installed = {p.name for p in Path(site).iterdir()}
    assert not installed & {"sdk", "api", "collector", "schema"}
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    probe = (
        "import tokentrail, tokentrail.collector.pipeline, tokentrail.api.app, tokentrail.schema;"
        "from tokentrail.schema.migrate import shipped_migrations;"
        "assert shipped_migrations(), 'migrations missing from the wheel';"
        "print(tokentrail.__file__)"
    )
    result = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": ":".join([site, *borrowed])},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(site)
