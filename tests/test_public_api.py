"""The public API (``vise_plugin.__all__``) changes only with the README's changelog saying so.

``tests/public_api.txt`` holds the signature of every public name and of each public method its class
defines; the newest changelog entry of the README names the fingerprint of that text. Changing a public
name or signature makes this test print the difference and the new fingerprint: update the file, and
add a changelog entry that says what changed and carries the new fingerprint.
"""

import difflib
import hashlib
import inspect
import os
import re

import vise_plugin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "public_api.txt")


def public_api() -> str:
    """One line per public name, and per public method or property a public class defines itself."""
    lines = []
    for name in sorted(vise_plugin.__all__):
        value = getattr(vise_plugin, name)
        if isinstance(value, str):
            continue  # __version__
        if inspect.isclass(value):
            lines.append(
                f"class {name}{inspect.signature(value.__init__)}".replace("(self, ", "(").replace("(self)", "()")
            )
            for member, attr in vars(value).items():
                if member.startswith("_"):
                    continue
                if isinstance(attr, property):
                    lines.append(f"    {name}.{member}: property -> {inspect.signature(attr.fget).return_annotation}")
                elif isinstance(attr, (classmethod, staticmethod)):
                    kind = type(attr).__name__
                    lines.append(f"    {kind} {name}.{member}{inspect.signature(attr.__func__)}")
                elif callable(attr):
                    lines.append(f"    {name}.{member}{inspect.signature(attr)}")
        else:
            lines.append(f"def {name}{inspect.signature(value)}")
    return "\n".join(lines) + "\n"


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def newest_changelog_entry() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    changelog = re.search(r"^## Changelog\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert changelog, "README.md has no '## Changelog' section"
    entry = re.search(r"^### .*?(?=^### |\Z)", changelog.group(1), re.M | re.S)
    assert entry, "the README's changelog has no '### <version>' entry"
    return entry.group(0)


def test_the_public_api_is_the_recorded_one():
    now = public_api()
    with open(SNAPSHOT, encoding="utf-8") as f:
        recorded = f.read()
    diff = "".join(difflib.unified_diff(recorded.splitlines(True), now.splitlines(True), "recorded", "now"))
    assert now == recorded, (
        f"the public API changed:\n{diff}\nwrite the new text to tests/public_api.txt and add a README changelog "
        f"entry saying what changed, with 'Public API fingerprint: `{fingerprint(now)}`'"
    )


def test_the_newest_changelog_entry_carries_the_api_fingerprint():
    entry = newest_changelog_entry()
    found = re.search(r"Public API fingerprint: `([0-9a-f]{8})`", entry)
    assert found, f"the README's newest changelog entry names no public API fingerprint:\n{entry}"
    assert found.group(1) == fingerprint(public_api()), (
        f"the README's newest changelog entry names the API fingerprint {found.group(1)}, the API's is "
        f"{fingerprint(public_api())}: say in a changelog entry what changed in the public API"
    )


def test_public_names_import_from_the_package_and_have_docstrings():
    from vise_plugin import VisELoss, VisEMultiHead, VisETargets, collate_targets  # noqa: F401

    for name in vise_plugin.__all__:
        value = getattr(vise_plugin, name)
        if not isinstance(value, str):
            assert inspect.getdoc(value), f"vise_plugin.{name} has no docstring"
