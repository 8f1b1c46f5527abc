"""Offline PRD parser: Markdown headings, requirement list items and acceptance-criteria blocks -> tasks.

Rules (documented in docs/tasks.md):

* Every top-level item of a numbered or bulleted list is a task; its nested lines belong to its description.
  A section with prose but no list inside a phase becomes one task named after its heading.
* "Acceptance criteria" (a heading, or a paragraph such as `**Acceptance criteria:**` followed by a list) is
  attached as acceptance text: inside a list item to that item's task, at section level to every task of
  the section it closes.
* Sections about context (overview, goals, non-goals, background, glossary, open questions…) yield no tasks.
* Phases are headings that start with Phase/Milestone/Stage/Step/Sprint/Iteration/Release; inside a phase,
  numbered headings (`### 1.2 …`) are sub-phases. Each phase's tasks depend on the tasks of the phase before
  it at the same level (reduced to the direct edges).
* Priority: `(priority: high)`, `[high]`, `[P0]`…`[P3]` markers, or "optional"/"nice to have" (low);
  default medium. A marker in a heading applies to the tasks under it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

from parley.tasks.models import Priority, ProposedTask, normalize, task_key


class PRDError(ValueError):
    """The PRD cannot be turned into tasks (empty, or nothing that looks like a requirement)."""


PHASE_RE = re.compile(r"^(phase|milestone|stage|step|sprint|iteration|release)\b\s*[\w.]*", re.IGNORECASE)
NUMBERED_RE = re.compile(r"^\d+(\.\d+)*[.)]?\s+\S")
ACCEPTANCE_RE = re.compile(
    r"^\s*[*_]{0,2}\s*acceptance(?P<crit>\s+criteria)?\s*[*_]{0,2}"
    r"\s*(?P<colon>:)?\s*[*_]{0,2}\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
CONTEXT_RE = re.compile(
    r"^(overview|introduction|intro|background|context|summary|purpose|problem|problem statement|vision"
    r"|goals?"
    r"|non[- ]goals|goals and non[- ]goals|out of scope|scope|glossary|terminology|definitions|references"
    r"|appendix.*|open questions|questions|risks.*|assumptions|personas|users|target users|stakeholders"
    r"|success metrics|metrics|revision history|changelog|notes|table of contents|contents)$",
    re.IGNORECASE,
)
_PRIORITY_MARKERS: list[tuple[re.Pattern[str], Priority | None]] = [
    (re.compile(r"\(\s*priority\s*[:=]\s*(high|medium|low)\s*\)", re.IGNORECASE), None),
    (re.compile(r"\bpriority\s*[:=]\s*(high|medium|low)\b", re.IGNORECASE), None),
    (re.compile(r"\[\s*(high|medium|low)\s*\]", re.IGNORECASE), None),
    (re.compile(r"\[\s*(p[0-3])\s*\]", re.IGNORECASE), None),
    (re.compile(r"\((optional|nice[- ]to[- ]have)\)", re.IGNORECASE), "low"),
]
#: A marker's word (lower case) -> the priority it means.
_LEVELS: dict[str, Priority] = {"high": "high", "medium": "medium", "low": "low",
                                "p0": "high", "p1": "high", "p2": "medium", "p3": "low"}
_LOW_WORDS = re.compile(r"\b(optional|nice[- ]to[- ]have)\b", re.IGNORECASE)
_BOLD_LEAD = re.compile(r"^\s*(\*\*|__)(?P<lead>.+?)\1\s*[:.\-–—]?\s*(?P<rest>.*)$", re.DOTALL)
_LEADING_NUMBER = re.compile(r"^\s*\d+(\.\d+)*[.)]?\s+")
_PHASE_PREFIX = re.compile(
    r"^(phase|milestone|stage|step|sprint|iteration|release)\s*[\w.]*\s*[:.)\-–—]\s*", re.IGNORECASE
)
_MAX_TITLE = 90
_CHECKBOX = re.compile(r"^\s*\[[ xX]\]\s+")


@dataclass
class _Section:
    title: str
    level: int
    parent: _Section | None = None
    is_phase: bool = False
    children: list[_Section] = field(default_factory=list)
    tasks: list[_Draft] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    priority: Priority | None = None

    def path(self) -> list[str]:
        out: list[str] = []
        node: _Section | None = self
        while node is not None and node.level > 0:
            out.append(node.title)
            node = node.parent
        return list(reversed(out))

    def is_context(self) -> bool:
        node: _Section | None = self
        while node is not None and node.level > 0:
            if CONTEXT_RE.match(_bare(node.title)):
                return True
            node = node.parent
        return False

    def in_phase(self) -> bool:
        node: _Section | None = self
        while node is not None:
            if node.is_phase:
                return True
            node = node.parent
        return False

    def inherited_priority(self) -> Priority | None:
        node: _Section | None = self
        while node is not None:
            if node.priority:
                return node.priority
            node = node.parent
        return None

    def subtree_tasks(self) -> list[_Draft]:
        out = list(self.tasks)
        for child in self.children:
            out.extend(child.subtree_tasks())
        return out


@dataclass
class _Draft:
    title: str
    description: str
    acceptance: list[str]
    priority: Priority | None
    section: _Section
    key: str = ""
    depends_on: set[str] = field(default_factory=set)


def _bare(title: str) -> str:
    """A heading without numbering, 'Phase 2:' prefixes, markup or a trailing colon."""
    text = _PHASE_PREFIX.sub("", _LEADING_NUMBER.sub("", title.strip()))
    return re.sub(r"[*_`]", "", text).strip().rstrip(":").strip()


def _take_priority(text: str, *, words: bool = True) -> tuple[str, Priority | None]:
    """Remove a priority marker from `text`; return the cleaned text and the priority found (or None).

    With `words`, a bare "optional" / "nice to have" also means low (used for titles and headings)."""
    for pattern, fixed in _PRIORITY_MARKERS:
        match = pattern.search(text)
        if match:
            level = fixed or _LEVELS[match.group(1).lower()]
            cleaned = (text[: match.start()] + text[match.end() :]).strip()
            return re.sub(r"\s{2,}", " ", cleaned), level
    if words and _LOW_WORDS.search(text):
        return text, "low"
    return text, None


def _acceptance_marker(line: str) -> str | None:
    """For a line that opens acceptance criteria ("Acceptance criteria", "**Acceptance criteria:**",
    "Acceptance: text"), the text after the marker; None for any other line ("Acceptance testing is…")."""
    m = ACCEPTANCE_RE.match(line)
    if not m or (not m.group("colon") and (not m.group("crit") or m.group("rest").strip())):
        return None
    return m.group("rest").strip()


def _first_paragraph(content: str) -> str:
    """An item's first paragraph up to any 'Acceptance criteria' line, without a task-list checkbox."""
    kept: list[str] = []
    for n, line in enumerate(content.splitlines()):
        if n and _acceptance_marker(line) is not None:
            break
        kept.append(line)
    return _CHECKBOX.sub("", "\n".join(kept))


def _short_title(text: str) -> tuple[str, str]:
    """Split an item's first paragraph into a title and the rest."""
    text = " ".join(text.split())
    bold = _BOLD_LEAD.match(text)
    if bold:
        return bold.group("lead").strip().rstrip(".:"), bold.group("rest").strip()
    if len(text) <= _MAX_TITLE:
        return text.rstrip("."), ""
    for sep in (". ", ": ", "; ", " — ", " - "):
        cut = text.find(sep)
        if 0 < cut <= _MAX_TITLE:
            return text[:cut].strip(), text[cut + len(sep) :].strip()
    cut = text.rfind(" ", 0, _MAX_TITLE)
    cut = cut if cut > 20 else _MAX_TITLE
    return text[:cut].rstrip(",;:") + "…", text


def _item_text(lines: list[str], start: int, end: int) -> str:
    """Source of a list item without its marker, dedented."""
    chunk = lines[start:end]
    if not chunk:
        return ""
    first = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", chunk[0])
    rest = textwrap.dedent("\n".join(chunk[1:]))
    return (first + ("\n" + rest if rest.strip() else "")).strip()


def _split_acceptance(text: str) -> tuple[str, str]:
    """Split an item's text at an 'Acceptance criteria' line: (description, acceptance)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        inline = _acceptance_marker(line) if i > 0 else None
        if inline is not None:
            body = textwrap.dedent("\n".join(lines[i + 1 :])).strip()
            acceptance = "\n".join(p for p in (inline, body) if p)
            return "\n".join(lines[:i]).strip(), acceptance
    return text, ""


def _is_acceptance_heading(text: str) -> bool:
    return bool(re.match(r"^\s*acceptance(\s+criteria)?\s*:?\s*$", _bare(text), re.IGNORECASE))


def _close(tokens: list[Token], i: int) -> int:
    """Index of the token closing the one opened at `i`."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _build_tree(text: str) -> _Section:
    md = MarkdownIt("commonmark")
    tokens = md.parse(text)
    lines = text.splitlines()
    root = _Section(title="", level=0)
    current = root
    acceptance_heading: _Section | None = None  # an "Acceptance criteria" heading collects into its parent
    pending_acceptance = False  # a paragraph "Acceptance criteria:" makes the next list acceptance text
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            title = tokens[i + 1].content.strip()
            parent = current
            while parent.level >= level:
                parent = parent.parent or root
            pending_acceptance = False
            if _is_acceptance_heading(title):
                acceptance_heading = parent
                current = parent
                # Deeper headings after this one still belong to `parent`'s tree.
                i = _close(tokens, i) + 1
                continue
            acceptance_heading = None
            clean, prio = _take_priority(title)
            node = _Section(title=clean, level=level, parent=parent, priority=prio)
            node.is_phase = bool(PHASE_RE.match(clean)) or (
                parent.in_phase() and bool(NUMBERED_RE.match(clean))
            )
            parent.children.append(node)
            current = node
            i = _close(tokens, i) + 1
            continue
        if tok.type == "paragraph_open" and tok.level == 0:
            content = tokens[i + 1].content.strip()
            first_line, _, more = content.partition("\n")
            marker = _acceptance_marker(first_line)
            if marker is not None:
                rest = "\n".join(p for p in (marker, more.strip()) if p)
                if rest:
                    current.acceptance.append(rest)
                pending_acceptance = True
            elif acceptance_heading is not None:
                acceptance_heading.acceptance.append(content)
            else:
                current.prose.append(content)
            i = _close(tokens, i) + 1
            continue
        if tok.type in ("bullet_list_open", "ordered_list_open") and tok.level == 0:
            end = _close(tokens, i)
            start_line, end_line = tok.map or (0, 0)
            if acceptance_heading is not None or pending_acceptance:
                target = acceptance_heading or current
                target.acceptance.append(textwrap.dedent("\n".join(lines[start_line:end_line])).strip())
                pending_acceptance = False
            else:
                _collect_items(tokens, i, end, lines, current)
            i = end + 1
            continue
        if tok.nesting == 1:
            i = _close(tokens, i) + 1
            continue
        i += 1
    return root


def _collect_items(tokens: list[Token], start: int, end: int, lines: list[str], section: _Section) -> None:
    """Turn the top-level items of the list at tokens[start:end] into task drafts."""
    list_level = tokens[start].level
    j = start + 1
    while j < end:
        tok = tokens[j]
        if tok.type == "list_item_open" and tok.level == list_level + 1:
            close = _close(tokens, j)
            first_inline = next((t for t in tokens[j:close] if t.type == "inline"), None)
            if first_inline is not None and first_inline.content.strip():
                s, e = tok.map or (0, 0)
                body = _item_text(lines, s, e)
                description, acceptance = _split_acceptance(body)
                head = _first_paragraph(first_inline.content)
                head, prio = _take_priority(head)
                if prio is None:
                    prio = _take_priority(first_inline.content, words=False)[1]
                title, _ = _short_title(head)
                description = _take_priority(description, words=False)[0]
                section.tasks.append(
                    _Draft(
                        title=title,
                        description=description,
                        acceptance=[acceptance] if acceptance else [],
                        priority=prio,
                        section=section,
                    )
                )
            j = close + 1
            continue
        j += 1


def _prose_tasks(node: _Section) -> None:
    """Leaf sections inside a phase that hold only prose become one task each."""
    for child in node.children:
        _prose_tasks(child)
    if node.level and not node.tasks and not node.children and node.prose and node.in_phase():
        node.tasks.append(
            _Draft(
                title=_bare(node.title) or node.title,
                description="\n\n".join(node.prose),
                acceptance=[],
                priority=None,
                section=node,
            )
        )


def _drop_context(node: _Section) -> None:
    if node.level and node.is_context():
        node.tasks.clear()
    for child in node.children:
        _drop_context(child)


def _link_phases(node: _Section) -> None:
    """Tasks of each phase depend on the tasks of the previous phase among its siblings."""
    previous: list[_Draft] = []
    for child in node.children:
        _link_phases(child)
        if not child.is_phase:
            continue
        tasks = child.subtree_tasks()
        if not tasks:
            continue
        if previous:
            for task in tasks:
                task.depends_on.update(p.key for p in previous)
        previous = tasks


def _reduce(drafts: list[_Draft]) -> None:
    """Transitive reduction: drop a dependency already implied by another one."""
    by_key = {d.key: d for d in drafts}
    memo: dict[str, set[str]] = {}

    def reach(key: str) -> set[str]:
        if key not in memo:
            memo[key] = set()
            out: set[str] = set()
            for dep in by_key[key].depends_on:
                out.add(dep)
                out |= reach(dep)
            memo[key] = out
        return memo[key]

    for draft in drafts:
        indirect: set[str] = set()
        for dep in draft.depends_on:
            indirect |= reach(dep)
        draft.depends_on -= indirect


def _display_path(section: _Section, drop_title: bool) -> list[str]:
    path = section.path()
    return path[1:] if drop_title and path else path


def parse_prd(text: str, *, limit: int | None = None) -> list[ProposedTask]:
    """Tasks proposed by the offline rules, in document order; `PRDError` when there are none."""
    if not text.strip():
        raise PRDError("the PRD is empty")
    root = _build_tree(text)
    _prose_tasks(root)
    _drop_context(root)
    # One H1 at the top is the document's title: leave it out of section paths (and so of identities).
    drop_title = len(root.children) == 1 and root.children[0].level == 1
    drafts = root.subtree_tasks()
    if not drafts:
        raise PRDError(
            "no requirements found: expected numbered or bulleted items under headings (see docs/tasks.md)"
        )
    seen: dict[str, int] = {}
    for draft in drafts:
        path = _display_path(draft.section, drop_title)
        ident = [_bare(p) for p in path]
        base = task_key(ident, draft.title)
        seen[base] = seen.get(base, 0) + 1
        draft.key = base if seen[base] == 1 else task_key(ident, f"{draft.title} #{seen[base]}")
    _link_phases(root)
    _reduce(drafts)
    # Section-level acceptance criteria go to every task of that section.
    for draft in drafts:
        node: _Section | None = draft.section
        while node is not None and not draft.acceptance:
            if node.acceptance:
                draft.acceptance = list(node.acceptance)
            node = node.parent if not node.acceptance else None
    kept = drafts[:limit] if limit else drafts
    kept_keys = {d.key for d in kept}
    out: list[ProposedTask] = []
    for draft in kept:
        out.append(
            ProposedTask(
                key=draft.key,
                title=draft.title,
                description=draft.description,
                acceptance="\n\n".join(draft.acceptance),
                priority=draft.priority or draft.section.inherited_priority() or "medium",
                section=" > ".join(_display_path(draft.section, drop_title)),
                depends_on=sorted(d for d in draft.depends_on if d in kept_keys),
            )
        )
    return out


__all__ = ["PRDError", "normalize", "parse_prd"]
