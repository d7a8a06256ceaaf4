"""What a wheel of the project holds: every data file the packages read at run time is declared as package data."""

import fnmatch
import tomllib
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def declared_data_files(package: str, package_data: dict[str, list[str]]) -> list[str]:
    return package_data.get("*", []) + package_data.get(package, [])


def test_every_non_python_file_of_the_packages_is_package_data():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    package_data = setuptools["package-data"]
    undeclared = []
    for root in roots:
        for path in sorted((REPO / root).rglob("*")):
            if not path.is_file() or path.suffix == ".pyc" or "__pycache__" in path.parts:
                continue
            if path.suffix == ".py" and (path.parent / "__init__.py").is_file():
                continue  # a module of a package: in the wheel without being package data
            # setuptools matches a pattern against the path relative to the package that holds it; the top-level
            # package's patterns may reach into its data folders (label_texts/*.yml, metrics/*/*.py).
            package_dir = path.parent
            while not (package_dir / "__init__.py").is_file():
                package_dir = package_dir.parent
            package = ".".join(package_dir.relative_to(REPO).parts)
            relative = path.relative_to(package_dir).as_posix()
            if not any(fnmatch.fnmatch(relative, pattern) for pattern in declared_data_files(package, package_data)):
                undeclared.append(path.relative_to(REPO).as_posix())
    assert undeclared == [], f"not in [tool.setuptools.package-data], so missing from wheels: {undeclared}"
