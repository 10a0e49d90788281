"""Bad-input campaign: malformed messages interleaved with valid ones through the worker's pipeline.

    python -m bench.fuzz [--messages N] [--batch-size N] [--seed S] [--json]     (or `secstream bench fuzz`)

Generates ``N`` messages (default 100,000), about 10% valid events (some with unicode edge
cases: emoji, right-to-left text, combining marks, zero-width characters) and the rest
malformed, in these families: random bytes, truncated JSON, wrong types, fields over the size
limit, deep nesting, invalid IP addresses and ports, timestamps outside 1970..2200, missing
required fields, unpaired surrogates. (Control characters such as NUL are valid JSON text and
are accepted, among the valid events' unicode edge cases.) They go through
:meth:`streams.stages.pipeline.Pipeline.process` in batches, as the events agent sends them (no store).

Per family: messages, how many were rejected (they must all be: each becomes a DLQ record with
a reason), the reasons, and how many were rejected as ``processing_error`` (a crash caught by
the per-message retry; must be 0). Valid events must all be accepted. Peak RSS is sampled every
batch: the first and last tenth are compared, so memory growth under a long campaign shows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from bench.memory import peak_rss_mib
from streams.cli.terminal import table

Maker = Callable[[random.Random, int], bytes]


def _valid_doc(rng: random.Random, i: int) -> dict[str, Any]:
    user = f"u{rng.randrange(20)}"
    return {"event_id": f"valid-{i}", "time": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "message": f"Accepted password for {user} from 10.0.{rng.randrange(4)}.{rng.randrange(250)} port 22",
            "source": "sshd", "event_type": "authentication", "user": user, "host": "bastion-01",
            "src_ip": f"10.0.{rng.randrange(4)}.{rng.randrange(250)}", "dst_port": 22, "outcome": "success"}


_UNICODE = ["café ☕ 🔐 login", "משתמש התחבר", "e\u0301\u0301\u0301 combining", "zero\u200bwidth\u200d join",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "\u202eRTL override", "漢字のログイン", "tab\tand\nnewline",
            "nul \x00 and bell \x07 control characters"]


def valid(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    if rng.random() < 0.3:
        doc["message"] = f"{rng.choice(_UNICODE)} {doc['message']}"
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8")


def random_bytes(rng: random.Random, i: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400)))


def truncated_json(rng: random.Random, i: int) -> bytes:
    whole = json.dumps(_valid_doc(rng, i)).encode()
    return whole[: rng.randrange(1, len(whole) - 1)]


def wrong_types(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    field, value = rng.choice([("time", []), ("time", {"t": 1}), ("message", {"m": 1}), ("message", 12),
                               ("src_port", "22"), ("dst_port", 1.5), ("bytes_in", -1), ("severity", 5),
                               ("outcome", "maybe"), ("attributes", [1, 2]), ("user", ["a"]), ("event_id", 7),
                               ("duration_ms", "fast"), ("attributes", {"k": {"nested": 1}})])
    doc[field] = value
    return json.dumps(doc).encode()


def too_large(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    doc["message"] = "A" * rng.randrange(90_000, 200_000)
    return json.dumps(doc).encode()


def deep_nesting(rng: random.Random, i: int) -> bytes:
    depth = rng.randrange(50, 20_000)
    doc = json.dumps(_valid_doc(rng, i))[:-1]
    return (doc + ', "attributes": {"x": ' + "[" * depth + "1" + "]" * depth + "}}").encode()


def bad_network(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    field, value = rng.choice([("src_ip", "999.1.1.1"), ("src_ip", "10.0.0"), ("dst_ip", "::g"),
                               ("dst_ip", "1.2.3.4/24"), ("src_port", 70_000), ("dst_port", -1),
                               ("src_ip", ""), ("dst_port", 2**63)])
    doc[field] = value
    return json.dumps(doc).encode()


def extreme_time(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    doc["time"] = rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2201-01-01T00:00:00Z",
                              "1969-12-31T23:59:59Z", -5, 10**20, 1e300, "yesterday", "2026-13-45T25:61:61Z", ""])
    return json.dumps(doc).encode()


def missing_required(rng: random.Random, i: int) -> bytes:
    doc = _valid_doc(rng, i)
    del doc[rng.choice(["time", "message"])]
    return json.dumps(doc).encode()


def bad_text(rng: random.Random, i: int) -> bytes:
    doc = json.dumps(_valid_doc(rng, i))
    bad = rng.choice(["\\ud800", "\\udfff lone", "x\\ud83d", "\\udc00\\ud800 reversed"])
    return doc.replace("Accepted password", f"Accepted {bad} password", 1).encode()


FAMILIES: dict[str, Maker] = {"random_bytes": random_bytes, "truncated_json": truncated_json,
                              "wrong_types": wrong_types, "too_large": too_large, "deep_nesting": deep_nesting,
                              "bad_ip_port": bad_network, "extreme_time": extreme_time,
                              "missing_required": missing_required, "bad_text": bad_text}


def iter_campaign(n: int, seed: int = 7, valid_share: float = 0.1) -> Iterator[tuple[str, bytes]]:
    """``n`` (family, message) pairs, made as they are consumed: ``valid`` about ``valid_share`` of
    them, the rest malformed."""
    rng = random.Random(seed)
    names = list(FAMILIES)
    for i in range(n):
        if rng.random() < valid_share:
            yield "valid", valid(rng, i)
        else:
            name = names[i % len(names)]
            yield name, FAMILIES[name](rng, i)


def campaign(n: int, seed: int = 7, valid_share: float = 0.1) -> list[tuple[str, bytes]]:
    """:func:`iter_campaign` as a list."""
    return list(iter_campaign(n, seed, valid_share))


def run(n: int = 100_000, batch_size: int = 500, seed: int = 7) -> dict[str, Any]:
    from streams.stages.pipeline import PROCESSING_ERROR, Accepted, Rejected
    from streams.stages.factory import build_pipeline
    from streams.config.settings import Settings

    messages = iter_campaign(n, seed)  # made batch by batch: RSS measures the pipeline, not the campaign
    pipeline = build_pipeline(Settings(), store=None)
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"messages": 0, "accepted": 0, "rejected": 0,
                                                            "crashes": 0, "reasons": Counter()})
    rss: list[float] = []
    started = time.perf_counter()
    for _ in range(0, n, batch_size):
        chunk = list(itertools.islice(messages, batch_size))
        out = pipeline.process([m for _, m in chunk])
        assert len(out.results) == len(chunk), "every input gets exactly one result"
        for res in out.results:
            family = chunk[res.index][0]
            row = stats[family]
            row["messages"] += 1
            if isinstance(res, Accepted):
                row["accepted"] += 1
            else:
                assert isinstance(res, Rejected) and res.reason
                row["rejected"] += 1
                row["reasons"][res.reason] += 1
                row["crashes"] += int(res.reason == PROCESSING_ERROR)
        rss.append(peak_rss_mib())
    seconds = time.perf_counter() - started
    tenth = max(1, len(rss) // 10)
    families = {k: {**v, "reasons": dict(v["reasons"].most_common())} for k, v in sorted(stats.items())}
    bad = [v for k, v in families.items() if k != "valid"]
    return {"messages": n, "seconds": round(seconds, 2), "messages_per_s": round(n / seconds, 1),
            "families": families,
            "malformed": sum(v["messages"] for v in bad), "malformed_rejected": sum(v["rejected"] for v in bad),
            "crashes": sum(v["crashes"] for v in families.values()),
            "valid": families.get("valid", {}).get("messages", 0),
            "valid_accepted": families.get("valid", {}).get("accepted", 0),
            "rss_mb_first_tenth": round(max(rss[:tenth]), 1), "rss_mb_last_tenth": round(max(rss[-tenth:]), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secstream bench fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.batch_size < 1:
        print("error: --messages and --batch-size must be >= 1", file=sys.stderr)
        return 2
    res = run(args.messages, args.batch_size, args.seed)
    if args.json:
        print(json.dumps(res))
        return 0
    rows = [[k, v["messages"], v["accepted"], v["rejected"], v["crashes"],
             ", ".join(f"{r} {c}" for r, c in v["reasons"].items())[:70]] for k, v in res["families"].items()]
    print(table(rows, ["family", "messages", "accepted", "rejected", "crashes", "reasons"]))
    print(f"\n{res['malformed_rejected']:,} of {res['malformed']:,} malformed rejected with a reason, "
          f"{res['valid_accepted']:,} of {res['valid']:,} valid accepted, {res['crashes']} crashes; "
          f"{res['messages_per_s']:,.0f} messages/s; peak RSS {res['rss_mb_first_tenth']} MB (first tenth) → "
          f"{res['rss_mb_last_tenth']} MB (last tenth)")
    ok = res["malformed_rejected"] == res["malformed"] and res["valid_accepted"] == res["valid"] and not res["crashes"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
