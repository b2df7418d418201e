"""The command reference, rendered from the registry (the same source `.help` reads):
`python -m commands.docs > docs/commands.md` writes it, and a test keeps it current."""

from __future__ import annotations

from commands.registry import ORDER, load_all

KINDS = (("standard", "Standard commands"), ("meta", "Meta-commands"),
         ("extension", "Extension commands"))


def commands_markdown() -> str:
    load_all()
    lines = ["# kdsim commands", "",
             "Generated from the command registry (`python -m commands.docs`); "
             "`.help` and `.help <command>` show the same text in a session.", ""]
    for kind, title in KINDS:
        specs = sorted((s for s in ORDER if s.kind == kind), key=lambda s: s.names[0].lower())
        if not specs:
            continue
        lines += [f"## {title}", "", "| Command | Syntax | What it does |", "|---|---|---|"]
        for spec in specs:
            names = ", ".join(f"`{n}`" for n in spec.names)
            syntax = spec.syntax.replace("|", "\\|")
            text = spec.help.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {names} | `{syntax}` | {text} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(commands_markdown(), end="")
