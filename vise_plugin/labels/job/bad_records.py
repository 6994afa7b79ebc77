"""Counting malformed engagement lines instead of failing on the first one."""

from typing import Any, Dict, List

from vise_plugin.labels.records import BadRecord


class BadRecordReport:
    """Counts of bad lines per kind, with the first ``max_examples`` ``file:line`` messages of each."""

    def __init__(self, max_examples: int = 5):
        self.max_examples = max_examples
        self.counts: Dict[str, int] = {}
        self.examples: Dict[str, List[str]] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, error: BadRecord) -> None:
        self.counts[error.kind] = self.counts.get(error.kind, 0) + 1
        examples = self.examples.setdefault(error.kind, [])
        if len(examples) < self.max_examples:
            examples.append(str(error))

    def merge(self, other: "BadRecordReport") -> "BadRecordReport":
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            room = self.max_examples - len(self.examples.setdefault(kind, []))
            self.examples[kind].extend(other.examples.get(kind, [])[: max(room, 0)])
        return self

    def to_dict(self) -> Dict[str, Any]:
        return {
            "total": self.total,
            "counts": dict(sorted(self.counts.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any], max_examples: int = 5) -> "BadRecordReport":
        report = cls(max_examples)
        report.counts = dict(d.get("counts", {}))
        report.examples = {k: list(v) for k, v in d.get("examples", {}).items()}
        return report

    def lines(self) -> List[str]:
        """Human-readable summary: one line per kind, then its examples."""
        out = []
        for kind, count in sorted(self.counts.items()):
            out.append(f"{count} {kind.replace('_', ' ')} line(s), e.g.:")
            out += [f"  {example}" for example in self.examples.get(kind, [])]
        return out
