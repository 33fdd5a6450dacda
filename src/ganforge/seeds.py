"""Seed lists as users type them (torch-free, so the CLI can parse them before importing torch)."""

from __future__ import annotations


def parse_seeds(text: str) -> list[int]:
    """'0-63' -> 0..63, '1,5,9' -> [1, 5, 9], '0-3,10' -> [0, 1, 2, 3, 10]. Raises ValueError naming the bad part."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a seed or range like 0-63") from None
    if not seeds:
        raise ValueError("no seeds given")
    return seeds
