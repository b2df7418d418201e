"""Graded labs: a scenario file with a `[lab]` table, worked with kd commands and
graded against the table's answer key (docs/labs.md)."""
