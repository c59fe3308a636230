"""House rules checked by a test: every Python file of the SDK, its tests and the example plugins
opens with a module docstring, and compiles."""

from __future__ import annotations

import ast
import unittest

import _support
from _support import REPO, SDK


class TidyTests(_support.TestCase):
    def test_every_file_says_what_it_is_for(self) -> None:
        paths = sorted(SDK.glob("src/**/*.py")) + sorted(SDK.glob("tests/*.py")) + sorted(REPO.glob("plugins/python/*.py"))
        self.assertGreater(len(paths), 10)
        for path in paths:
            with self.subTest(path=str(path.relative_to(REPO))):
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
                docstring = ast.get_docstring(tree)
                self.assertTrue(docstring and docstring.strip(), f"{path} has no module docstring")

    def test_the_package_is_typed(self) -> None:
        self.assertTrue((SDK / "src" / "sgevents" / "py.typed").is_file())


if __name__ == "__main__":
    unittest.main()
