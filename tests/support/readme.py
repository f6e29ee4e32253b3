"""The README's shell blocks as commands a test can run, and the README's output convention.

Conventions (the README states them where its quickstart starts):
- Every ```sh block runs, in order, unless an HTML comment `<!-- readme-test: skip: REASON -->`
  stands on the line before it (invisible on GitHub; the reason says which test covers it instead).
- `# -> TEXT` after a command (on its last line, or on the lines that follow it) is what the command
  prints. JSON (`{...}` / `[...]`) must match the output's JSON: `"..."` stands for any value and a
  trailing `...` in an object or list for more members; a string `"<name>"` (angle brackets) is a
  value to copy: the first time it is seen it is whatever the output holds there, and later
  commands that say `<name>` get that value. Three digits are the HTTP status of a `curl -i`. Any
  other text must appear in the output, `...` standing for anything within a line and a space for
  any run of spaces.
- A command whose comment says `streams` runs until it is stopped: the test stops it after a few
  seconds and checks what it printed by then.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b(.*?)-->")
MORE = "\u2026more\u2026"  # stands for `...` while a pattern is parsed as JSON
ANY = "\u2026any\u2026"


@dataclass
class Command:
    text: str
    block: int
    line: int
    expected: list[str] = field(default_factory=list)
    streams: bool = False


@dataclass
class Block:
    index: int
    line: int
    text: str
    skip_reason: str | None


def shell_blocks(markdown: str) -> list[Block]:
    """Every ```sh block of the document, with the skip reason of its marker, if any."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```sh", "```bash", "```shell"):
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            marker = next((line for line in reversed(lines[:start]) if line.strip()), "")
            skip = SKIP.search(marker)
            blocks.append(Block(len(blocks), start + 2, "\n".join(body), skip.group(1).strip(" :") if skip else None))
        i += 1
    return blocks


def commands(block: Block) -> list[Command]:
    """Splits a block into commands: a newline ends one unless it is quoted or escaped by `\\`.

    Comments are dropped from the command text; their `# -> ` parts become its expectations.
    """
    result: list[Command] = []
    text = block.text
    current: list[str] = []
    comments: list[str] = []
    quote: str | None = None
    line = block.line
    start_line = line
    i = 0

    def finish() -> None:
        command = "".join(current).strip()
        expected = [c.split("->", 1)[1].strip() for c in comments if c.lstrip("# ").startswith("->")]
        streams = any("streams" in c for c in comments)
        if command:
            result.append(Command(command, block.index, start_line, expected, streams))
        elif result and expected:
            # A comment line of its own after a command: more of that command's output.
            result[-1].expected.extend(expected)
        current.clear()
        comments.clear()

    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            elif char == "\n":
                line += 1
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "\\" and text[i + 1 : i + 2] == "\n":
            current.append(" ")
            i += 1
            line += 1
        elif char == "#" and (not current or current[-1] in " \t\n"):
            end = text.find("\n", i)
            end = len(text) if end == -1 else end
            comments.append(text[i:end])
            i = end
            continue
        elif char == "\n":
            finish()
            line += 1
            start_line = line + 1
        else:
            if not current or not "".join(current).strip():
                start_line = line
            current.append(char)
        i += 1
    finish()
    return result


def _pattern(text: str) -> Any:
    text = re.sub(
        r",\s*\.\.\.\s*([}\]])", lambda m: f', "{MORE}"{m.group(1)}' if m.group(1) == "]" else f', "{MORE}": 0}}', text
    )
    text = re.sub(r"\{\s*\.\.\.\s*\}", f'{{"{MORE}": 0}}', text)
    text = re.sub(r"\[\s*\.\.\.\s*\]", f'["{MORE}"]', text)
    text = text.replace('"..."', f'"{ANY}"')
    return json.loads(text)


def body_of(output: str) -> str:
    """The body of a `curl -i` answer (after the headers), else the whole output."""
    if output.startswith("HTTP/"):
        parts = re.split(r"\r?\n\r?\n", output, maxsplit=1)
        return parts[1] if len(parts) > 1 else ""
    return output


class Mismatch(AssertionError):
    pass


def match_json(pattern: Any, actual: Any, captures: dict[str, Any], path: str = "$") -> None:
    if pattern == ANY:
        return
    if isinstance(pattern, str) and re.fullmatch(r"<[^<>]+>", pattern):
        if pattern in captures and captures[pattern] != actual:
            raise Mismatch(f"{path}: {actual!r} is not the {pattern} seen before ({captures[pattern]!r})")
        captures[pattern] = actual
        return
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            raise Mismatch(f"{path}: expected an object, got {actual!r}")
        more = pattern.get(MORE) is not None
        keys = [k for k in pattern if k != MORE]
        for key in keys:
            if key not in actual:
                raise Mismatch(f"{path}: {key!r} missing from {actual!r}")
            match_json(pattern[key], actual[key], captures, f"{path}.{key}")
        if not more and set(actual) - set(keys):
            raise Mismatch(f"{path}: unexpected members {sorted(set(actual) - set(keys))}")
        return
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            raise Mismatch(f"{path}: expected a list, got {actual!r}")
        more = bool(pattern) and pattern[-1] == MORE
        items = pattern[:-1] if more else pattern
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            raise Mismatch(f"{path}: expected {len(items)}{'+' if more else ''} items, got {len(actual)}")
        for n, item in enumerate(items):
            match_json(item, actual[n], captures, f"{path}[{n}]")
        return
    if pattern != actual or isinstance(pattern, bool) != isinstance(actual, bool):
        raise Mismatch(f"{path}: expected {pattern!r}, got {actual!r}")


def check(expected: str, output: str, captures: dict[str, Any]) -> None:
    """Raises Mismatch unless `output` is what `expected` (one `# ->` line) says."""
    if re.fullmatch(r"\d{3}", expected):
        first = output.splitlines()[0] if output else ""
        if not re.match(rf"HTTP/\S+ {expected}\b", first):
            raise Mismatch(f"expected HTTP status {expected}, got {first!r}")
        return
    if expected[:1] in "{[":
        body = body_of(output).strip()
        try:
            actual = json.loads(body)
        except ValueError:
            raise Mismatch(f"expected JSON, got {body[:300]!r}") from None
        trial = dict(captures)
        match_json(_pattern(expected), actual, trial)
        captures.update(trial)
        return
    # Columns of a table are padded to their widest value: any run of spaces matches a run of spaces.
    regex = ".*?".join(r"\s+".join(map(re.escape, part.split())) for part in expected.split("..."))
    if not re.search(regex, output):
        raise Mismatch(f"expected output containing {expected!r}")


def substitute(command: str, captures: dict[str, Any]) -> str:
    """Fills `<name>` placeholders with values captured from earlier outputs."""
    for name, value in captures.items():
        command = command.replace(name, value if isinstance(value, str) else json.dumps(value))
    return command


def readme_commands(path: Path) -> tuple[list[Command], list[Block]]:
    blocks = shell_blocks(path.read_text())
    runnable = [command for block in blocks if block.skip_reason is None for command in commands(block)]
    return runnable, blocks
