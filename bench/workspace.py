"""``python -m bench workspace``: server-side render time of the retention workspace's pages.

The target (docs/workspace.md): a worklist page of 50 customers renders in under 100 ms on
the 20,000-customer demo. One run fits the demo bundle on seeded demo data
(:func:`bench.serving.fit_demo_bundle`), scores every customer at the demo's ``as_of`` and
30 days before it (so ``change`` and the risers filter have values), with the plan as the
segment, loads that snapshot the way the server does (sha256-checked, ranked) into a real app
(:func:`serving.app.create_app`) with a session and an outcomes store holding outcomes for 5%
of the customers, and times requests through the whole ASGI stack (middlewares, session
check, outcomes query, filters, template), in process, so the figure is the server's time
without the network.

Figures: the median of :data:`ROUNDS` interleaved rounds of each page, and the ratio of each
page to ``/v1/at-risk`` (the JSON page of 50 with the same ranking, measured in the same
rounds) as the baseline.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import Figure

BENCH = "workspace"
ROUNDS = 7
REQUESTS_PER_ROUND = 10


def _scored(n_customers: int, work: Path) -> tuple[Path, Any]:
    """Score the demo at its ``as_of`` with the change since 30 days before; the folder and
    the fitted bundle."""
    from bench.serving import fit_demo_bundle, write_snapshot
    from features.build import build_features
    from features.validation import validate_tables
    from models.scoring import score_frame

    fit = fit_demo_bundle(n_customers, trees=100)
    tables, _ = validate_tables(fit.raw)
    before = build_features(tables, as_of=fit.as_of - pd.Timedelta(days=30))
    previous = score_frame(fit.bundle, before)["churn_probability"]
    scores = score_frame(fit.bundle, fit.frame).reset_index()
    scores.insert(1, "as_of", fit.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"))
    scores["top_reasons"] = [json.dumps(r, separators=(",", ":")) for r in scores["top_reasons"]]
    scores["model_version"] = "1"
    scores["risk_band"] = scores["risk_band"].astype("str")
    scores["status"] = scores["status"].astype("str")
    prev = scores["customer_id"].map(previous)
    scores["previous_churn_probability"] = prev
    scores["change"] = scores["churn_probability"] - prev
    plans = fit.raw["customers"].set_index("customer_id")["plan"].astype(str)
    scores["segment"] = scores["customer_id"].map(plans)
    folder = work / "scores"
    write_snapshot(folder, scores, "1", fit.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return folder, fit.bundle


async def _measure(
    app: Any, pages: dict[str, tuple[str, dict[str, str]]]
) -> dict[str, list[float]]:
    """Seconds per request of each page (path, headers), through the app's whole ASGI stack
    in this process: a warm-up request each, then :data:`ROUNDS` interleaved rounds."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def once(path: str, headers: dict[str, str]) -> float:
            start = time.perf_counter()
            response = await client.get(path, headers=headers)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200, (path, response.status_code)
            return elapsed

        for path, headers in pages.values():  # warm-up: templates compiled, first queries
            await once(path, headers)
        samples: dict[str, list[float]] = {name: [] for name in pages}
        for _ in range(ROUNDS):  # interleaved: a busy spell on the machine hits every page
            for name, (path, headers) in pages.items():
                for _ in range(REQUESTS_PER_ROUND):
                    samples[name].append(await once(path, headers))
    return samples


def run(quick: bool) -> list[Figure]:
    """Time the workspace pages on the demo (2,000 customers with ``quick``, else 20,000)."""
    from models.settings import ServeSettings
    from serving.app import create_app
    from serving.at_risk import Ranking
    from serving.auth import create_key
    from serving.history import load_history
    from serving.loader import LoadedModel
    from serving.outcomes import OutcomeStore
    from serving.sessions import COOKIE
    from serving.snapshot import load_snapshot
    from serving.state import Components

    n_customers = 2000 if quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        folder, bundle = _scored(n_customers, work)
        print(
            f"demo of {n_customers:,} customers fitted and scored in {time.perf_counter() - t0:.0f} s"
        )
        settings = ServeSettings(
            _env_file=None,  # type: ignore[call-arg]
            scores_dir=folder,
            api_keys_file=work / "keys.json",
            model_cache_dir=work / "cache",
        )
        key = create_key(settings.api_keys_file, "bench")
        app = create_app(settings)
        snapshot = load_snapshot(folder, folder)
        history = load_history(snapshot, folder, keep=1)
        model = LoadedModel(bundle, "churn-clv", "1", datetime.now(UTC))
        app.state.serving.current = Components(model, snapshot, Ranking.build(snapshot), history)
        store = OutcomeStore(f"sqlite:///{work / 'outcomes.db'}")
        for cid in list(snapshot.scores)[::20]:
            store.record(cid, "contacted", "called", "bench")
        app.state.outcomes = store
        session = app.state.workspace.sessions.open(app.state.serving.key_store.check(key))
        first = next(iter(snapshot.scores))
        segment = next(s for s in snapshot.segments.values() if s)
        pages: dict[str, tuple[str, dict[str, str]]] = {
            name: (path, {"Cookie": f"{COOKIE}={session.token}"})
            for name, path in {
                "worklist page of 50 (default: at risk)": "/workspace",
                "worklist, 5 filters + not contacted": f"/workspace?segment={segment}&band=high"
                "&min_clv=50&change=up1&not_contacted=1&status=not_lapsed",
                "worklist sorted by churn, page 5": "/workspace?sort=churn_probability&page=5",
                "worklist id search": "/workspace?q=00012&status=all",
                "customer page": f"/workspace/customers/{first}",
                "model page": "/workspace/model",
            }.items()
        }
        pages["baseline: /v1/at-risk JSON page of 50"] = (
            "/v1/at-risk?status=at_risk",
            {"X-API-Key": key},
        )
        samples = asyncio.run(_measure(app, pages))
        store.close()
    base = statistics.median(samples["baseline: /v1/at-risk JSON page of 50"])
    figures = []
    for name, values in samples.items():
        median = statistics.median(values)
        target = "< 100 ms" if name.startswith("worklist page of 50") else ""
        note = "" if name.startswith("baseline") else f"{median / base:.1f}x the /v1/at-risk page"
        figures.append(
            Figure(BENCH, f"{name}, {n_customers:,} customers", median * 1000, "ms", target, note)
        )
    return figures
