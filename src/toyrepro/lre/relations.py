"""Relations as (subject, object) pairs plus a prompt format, and the shipped fact files.

A relation file `relations/<name>.tsv` (UTF-8, tab-separated) is

    # comment lines and blank lines are ignored
    template<TAB>The capital of {} is
    France<TAB>Paris
    ...

The template holds `{}` once, where the subject goes; the object follows after one space.
Facts are curated by hand from public knowledge (capitals, languages, chemical symbols, ...).
A malformed line stops loading with `<file>:<line>: <problem>`.

Prompts are few-shot (Hernandez et al. 2023, §3.1: the Jacobian is taken on prompts that
show the relation's other training samples): "<demo 1>\\n<demo 2>\\n...<template(subject)>".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELATIONS_DIR = Path(__file__).parent / "relations"


class RelationFileError(ValueError):
    """A relation file is malformed; the message names the file and the line."""


@dataclass
class Relation:
    name: str
    samples: list[tuple[Any, Any]]  # (subject, object)
    fmt: Any  # TextPrompts or toy.ToyPrompts: prompt(subject, demos) -> (ids, subject_pos); object_token(obj)


class TextPrompts:
    """Few-shot text prompts for a tokenizer-backed LM."""

    def __init__(self, lm, template: str):
        self.lm, self.template = lm, template
        self.head, self.tail = template.split("{}")

    def object_token(self, obj: str) -> int:
        return self.lm.encode(" " + obj)[0]

    def prompt(self, subject: str, demos: list[tuple[str, str]]) -> tuple[list[int], int]:
        """Token ids and the position of the subject's last token."""
        context = "".join(f"{self.template.format(s)} {o}\n" for s, o in demos)
        upto = context + self.head + subject
        ids = self.lm.encode(upto + self.tail)
        pre = self.lm.encode(upto)
        if ids[: len(pre)] != pre:  # the tokenizer merged the subject's end with the template
            raise ValueError(f"subject {subject!r}: its last token is not a token boundary in {self.template!r}")
        return ids, len(pre) - 1


def load_relation_file(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """(template, [(subject, object), ...]) from one .tsv file; RelationFileError on any bad line."""
    template, facts, seen = None, [], set()
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        where = f"{path}:{n}"
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise RelationFileError(f"{where}: expected two non-empty tab-separated fields "
                                    f"(subject<TAB>object), got {line!r}")
        a, b = (p.strip() for p in parts)
        if a == "template":
            if template is not None:
                raise RelationFileError(f"{where}: a second template line")
            if b.count("{}") != 1 or b.endswith(" "):
                raise RelationFileError(f"{where}: the template must contain '{{}}' exactly once "
                                        f"and not end with a space, got {b!r}")
            template = b
            continue
        if template is None:
            raise RelationFileError(f"{where}: facts before the 'template<TAB>...' line")
        if a in seen:
            raise RelationFileError(f"{where}: duplicate subject {a!r}")
        seen.add(a)
        facts.append((a, b))
    if template is None or not facts:
        raise RelationFileError(f"{path}: no template line or no facts")
    return template, facts


def load_relations(lm, names: list[str] | None = None, max_subjects: int = 0,
                   directory: Path = RELATIONS_DIR) -> list[Relation]:
    """The shipped relations (all, or `names`), formatted for `lm`'s tokenizer."""
    available = sorted(p.stem for p in directory.glob("*.tsv"))
    names = names or available
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"lre.relations: unknown relation(s) {missing}; available: {available}")
    out = []
    for name in names:
        template, facts = load_relation_file(directory / f"{name}.tsv")
        out.append(Relation(name, facts[: max_subjects or None], TextPrompts(lm, template)))
    return out
