"""The retention workspace: sign-in, worklist, customer and model pages (docs/workspace.md).

HTML for people in a browser, next to the JSON API and reading the same loaded components:
the worklist is :meth:`serving.at_risk.Ranking.page` (the one implementation of the
``/v1/at-risk`` filters) and its CSV is :func:`serving.at_risk.page_csv`, so "Download CSV"
holds exactly the rows ``/v1/at-risk`` returns for the same filters, in the same order.

Pages need a session (serving/sessions.py): without one they redirect to ``/signin``. Every
POST form carries the session's CSRF token (the sign-in form a pre-session one, in its own
SameSite=Strict cookie). Query strings (the worklist filters) never reach the access log,
which writes route templates only (serving/access_log.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from models import contract
from serving import workspace as ws
from serving.at_risk import SORT_KEYS, Ranking, page_csv
from serving.auth import KeyStoreError
from serving.charts import line_chart
from serving.config import Settings
from serving.loader import training_report_path
from serving.outcomes import MAX_NOTE_LENGTH, OUTCOMES
from serving.sessions import COOKIE, WORKSPACE_SCOPES, Session, SessionStore, SignInLimiter
from serving.state import Components

log = logging.getLogger(__name__)

PAGE_SIZE = 50
#: The sign-in form's pre-session CSRF cookie.
SIGNIN_COOKIE = "churn_signin"
#: Largest form body read, bytes (a note is at most 2,000 characters).
MAX_FORM_BYTES = 16 * 1024

STATUS_CHOICES = (
    ("at_risk", "At risk"),
    ("active", "Active"),
    ("not_lapsed", "Active and at risk"),
    ("lapsed", "Lapsed"),
    ("all", "All statuses"),
)
_STATUSES: dict[str, tuple[str, ...] | None] = {
    "at_risk": ("at_risk",),
    "active": ("active",),
    "not_lapsed": ("active", "at_risk"),
    "lapsed": ("lapsed",),
    "all": None,
}
#: The "Change" filter: risers since the previous snapshot by at least this much.
CHANGE_CHOICES = (
    ("", "Any change"),
    ("up1", "Risers: up ≥ 1 pt"),
    ("up5", "Risers: up ≥ 5 pts"),
    ("up10", "Risers: up ≥ 10 pts"),
)
_MIN_CHANGE = {"up1": 0.01, "up5": 0.05, "up10": 0.10}
#: The worklist's columns: sort key (empty: not sortable), heading, CSS class.
COLUMNS = (
    ("customer_id", "Customer", ""),
    ("", "Segment", ""),
    ("", "Band", ""),
    ("churn_probability", "Percentile", "num"),
    ("churn_probability", "Churn", "num"),
    ("clv", "CLV", "num"),
    ("value_at_risk", "Value at risk", "num"),
    ("change", "Change", ""),
    ("", "First reason", ""),
    ("", "Last outcome", ""),
)


@dataclass
class WorkspaceState:
    """The workspace's part of the app: sessions, the sign-in limiter and small caches."""

    sessions: SessionStore
    limiter: SignInLimiter
    settings: Settings
    _segments: tuple[int, list[str]] | None = None

    def segments(self, ranking: Ranking) -> list[str]:
        """The snapshot's segments, sorted (computed once per loaded ranking)."""
        if self._segments is None or self._segments[0] != id(ranking):
            found = sorted({str(s) for s in ranking.segment if s is not None})
            self._segments = (id(ranking), found)
        return self._segments[1]


@dataclass(frozen=True)
class WorklistQuery:
    """The worklist's filters, sort and page, read from a query string (bad values fall back
    to the defaults: a hand-edited URL never errors, and is never repeated back)."""

    q: str = ""
    segment: str = ""
    band: str = ""
    status: str = "at_risk"
    min_clv: str = ""
    change: str = ""
    not_contacted: bool = False
    sort: str = "value_at_risk"
    dir: str = "desc"
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], segments: list[str]) -> WorklistQuery:
        def pick(name: str, allowed: Any, default: str) -> str:
            value = params.get(name, default)
            return value if value in allowed else default

        min_clv = params.get("min_clv", "").strip()
        try:
            if min_clv and not float(min_clv) >= 0:
                min_clv = ""
        except ValueError:
            min_clv = ""
        try:
            page = max(1, min(int(params.get("page", "1")), 1_000_000))
        except ValueError:
            page = 1
        return cls(
            q=params.get("q", "").strip()[:128],
            segment=pick("segment", segments, ""),
            band=pick("band", contract.RISK_BANDS, ""),
            status=pick("status", _STATUSES, "at_risk"),
            min_clv=min_clv,
            change=pick("change", _MIN_CHANGE, ""),
            not_contacted=params.get("not_contacted") == "1",
            sort=pick("sort", SORT_KEYS, "value_at_risk"),
            dir=pick("dir", ("asc", "desc"), "desc"),
            page=page,
        )

    def params(self, **override: Any) -> dict[str, Any]:
        """The query parameters that differ from the defaults (for links)."""
        values = {
            "q": self.q,
            "segment": self.segment,
            "band": self.band,
            "status": self.status if self.status != "at_risk" else "",
            "min_clv": self.min_clv,
            "change": self.change,
            "not_contacted": "1" if self.not_contacted else "",
            "sort": self.sort if self.sort != "value_at_risk" else "",
            "dir": self.dir if self.dir != "desc" else "",
            "page": self.page if self.page > 1 else "",
        }
        values.update(override)
        return values

    def filters(self, contacted: set[str] | None) -> dict[str, Any]:
        """Keyword arguments of :meth:`Ranking.page` for these filters and sort."""
        return {
            "segment": self.segment or None,
            "min_clv": float(self.min_clv) if self.min_clv else None,
            "risk_band": self.band or None,
            "min_change": _MIN_CHANGE.get(self.change),
            "statuses": _STATUSES[self.status],
            "id_contains": self.q or None,
            "exclude_ids": contacted if self.not_contacted else None,
            "sort": self.sort,
            "descending": self.dir == "desc",
        }


def _state(request: Request) -> WorkspaceState:
    return request.app.state.workspace


def _session(request: Request) -> Session | None:
    return _state(request).sessions.get(request.cookies.get(COOKIE))


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _outcomes(request: Request) -> Any | None:
    """The app's outcome store (serving/outcomes.py), or None when there is none."""
    return getattr(request.app.state, "outcomes", None)


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form body as ``{name: first value}`` (at most :data:`MAX_FORM_BYTES`)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items()}


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303, headers=ws.SECURITY_HEADERS)


def _message(
    status: int, heading: str, message: str, session: Session | None, **headers: str
) -> Response:
    back = ("/workspace", "Back to the worklist") if session else ("/signin", "Sign in")
    return ws.render(
        "message.html",
        status_code=status,
        headers=headers,
        heading=heading,
        message=message,
        session=session,
        back_url=back[0],
        back_text=back[1],
    )


def _scores(components: Components, session: Session) -> Response | None:
    """The page to show instead while no trusted snapshot is loaded, else None."""
    if components.snapshot is None or components.ranking is None or components.history is None:
        return _message(
            503, "Scores not loaded", "The server has no scored snapshot yet; see /readyz.", session
        )
    if components.model is None and components.problems.get("model") == "untrusted_model":
        return _message(
            503,
            "Scores withheld",
            "The champion model failed verification; scores are withheld until a trusted "
            "model is loaded.",
            session,
        )
    return None


def _with_scores(request: Request) -> tuple[Session, Components] | Response:
    """The request's session and the components current now, or the page to answer
    instead: the sign-in redirect without a session, a 503 page without trusted scores."""
    session = _session(request)
    if session is None:
        return _to_signin()
    components: Components = request.app.state.serving.current
    if (refused := _scores(components, session)) is not None:
        return refused
    return session, components


def build_router(settings: Settings) -> APIRouter:
    """The workspace routes (kept out of the OpenAPI schema: they serve HTML)."""
    router = APIRouter(include_in_schema=False)
    lifetime = int(settings.session_hours * 3600)

    @router.get("/")
    async def home(request: Request) -> Response:
        target = "/workspace" if _session(request) else "/signin"
        return RedirectResponse(target, status_code=303, headers=ws.SECURITY_HEADERS)

    @router.get("/signin")
    async def signin_page(request: Request) -> Response:
        if _session(request):
            return RedirectResponse("/workspace", status_code=303, headers=ws.SECURITY_HEADERS)
        return _signin_form(None, 200)

    def _signin_form(message: str | None, status: int, **headers: str) -> Response:
        csrf = secrets.token_urlsafe(32)
        response = ws.render(
            "signin.html",
            status_code=status,
            headers=headers,
            csrf=csrf,
            message=message,
            session=None,
            hours=f"{settings.session_hours:g}",
        )
        response.set_cookie(
            SIGNIN_COOKIE,
            csrf,
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/signin",
        )
        return response

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        state = _state(request)
        address = _address(request)
        wait = state.limiter.blocked(address)
        if wait > 0:
            log.warning("workspace sign-in refused: too many failures from %s", address)
            return _message(
                429,
                "Too many attempts",
                "Too many failed sign-ins from this address; wait a minute and try again.",
                None,
                **{"Retry-After": str(int(wait) + 1)},
            )
        form = await _form(request)
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        if not expected or not secrets.compare_digest(
            expected.encode(), form.get("csrf", "").encode()
        ):
            return _signin_form("The sign-in form expired; please try again.", 400)
        try:
            key = request.app.state.serving.key_store.check(form.get("api_key", "").strip())
        except KeyStoreError as exc:
            log.error("%s", exc)
            return _message(503, "Sign-in unavailable", "API keys cannot be checked now.", None)
        if key is None or not key.scopes & WORKSPACE_SCOPES:
            state.limiter.failed(address)
            log.warning("workspace sign-in failed from %s (unknown key or no scope)", address)
            return _signin_form("That key is not valid for the workspace.", 401)
        session = state.sessions.open(key)
        log.info("workspace sign-in: key '%s' from %s", key.name, address)
        response = RedirectResponse("/workspace", status_code=303, headers=ws.SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=lifetime,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/",
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        session = _session(request)
        form = await _form(request)
        if session is not None:
            if not session.csrf_ok(form.get("csrf")):
                return _message(403, "Not signed out", "The form expired; reload it.", session)
            _state(request).sessions.close(session.token)
            log.info("workspace sign-out: key '%s'", session.key_name)
        response = _to_signin()
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/workspace")
    async def worklist(request: Request) -> Response:
        gate = _with_scores(request)
        if isinstance(gate, Response):
            return gate
        return await render_worklist(request, *gate)

    @router.get("/workspace/worklist.csv")
    async def worklist_csv(request: Request) -> Response:
        gate = _with_scores(request)
        if isinstance(gate, Response):
            return gate
        components = gate[1]
        ranking, snapshot = components.ranking, components.snapshot
        assert ranking is not None and snapshot is not None
        query = WorklistQuery.parse(request.query_params, _state(request).segments(ranking))
        latest = await _latest_outcomes(request)
        page = ranking.page(limit=None, **query.filters(set(latest)))
        return StreamingResponse(
            page_csv(page, ranking, snapshot),
            media_type="text/csv; charset=utf-8",
            headers={
                **ws.SECURITY_HEADERS,
                "Content-Disposition": 'attachment; filename="worklist.csv"',
            },
        )

    @router.get("/workspace/customers/{customer_id:path}")
    async def customer(request: Request, customer_id: str) -> Response:
        session = _session(request)
        if session is None:
            return _to_signin()
        return await render_customer(request, session, customer_id)

    @router.post("/workspace/customers/{customer_id:path}/outcomes")
    async def record_outcome(request: Request, customer_id: str) -> Response:
        session = _session(request)
        if session is None:
            return _to_signin()
        form = await _form(request)
        if not session.csrf_ok(form.get("csrf")):
            return _message(403, "Not recorded", "The form expired; reload the page.", session)
        components = request.app.state.serving.current
        if (refused := _scores(components, session)) is not None:
            return refused
        snapshot = components.snapshot
        if customer_id not in snapshot.scores:
            return _message(404, "Unknown customer", "The snapshot has no such customer.", session)
        store = _outcomes(request)
        if store is None:
            return _message(503, "Not recorded", "Outcome storage is not configured.", session)
        outcome, note = form.get("outcome", ""), form.get("note", "").strip()
        if outcome not in OUTCOMES or len(note) > MAX_NOTE_LENGTH:
            return await render_customer(
                request,
                session,
                customer_id,
                message="Choose one of the outcomes; a note is at most 2,000 characters.",
                status=400,
            )
        await run_in_threadpool(
            store.record_scored, snapshot, customer_id, outcome, note, session.key_name
        )
        target = ws.customer_url(customer_id) + "#outcomes"
        return RedirectResponse(target, status_code=303, headers=ws.SECURITY_HEADERS)

    @router.get("/workspace/model")
    async def model_page(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _to_signin()
        return render_model(request, session)

    @router.get("/workspace/model/monitoring")
    async def monitoring_report(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _to_signin()
        path = monitoring_path(settings)
        if not path.is_file():
            return _message(404, "No monitoring report", "make monitor writes it.", session)
        return FileResponse(path, media_type="text/html", headers=_report_headers())

    @router.get("/workspace/model/report")
    async def training_report(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _to_signin()
        model = request.app.state.serving.current.model
        path = None
        if model is not None:
            path = await run_in_threadpool(training_report_path, settings, model.version)
        if path is None:
            return _message(
                404, "No training report", "The registry holds no report for this version.", session
            )
        return FileResponse(path, media_type="text/html", headers=_report_headers())

    return router


def _report_headers() -> dict[str, str]:
    return {**ws.SECURITY_HEADERS, "Content-Security-Policy": ws.REPORT_CSP}


def monitoring_path(settings: Settings) -> Path:
    """``<scores_dir>/monitoring/report.html`` (written by ``make monitor``)."""
    return Path(settings.scores_dir) / "monitoring" / "report.html"


async def _latest_outcomes(request: Request) -> dict[str, Any]:
    store = _outcomes(request)
    if store is None:
        return {}
    return await run_in_threadpool(store.latest_by_customer)


async def render_worklist(request: Request, session: Session, components: Components) -> Response:
    """The worklist page for the request's filters (docs/workspace.md, "Worklist")."""
    ranking, snapshot = components.ranking, components.snapshot
    assert ranking is not None and snapshot is not None
    segments = _state(request).segments(ranking)
    query = WorklistQuery.parse(request.query_params, segments)
    latest = await _latest_outcomes(request)
    offset = (query.page - 1) * PAGE_SIZE
    page = ranking.page(limit=PAGE_SIZE, offset=offset, **query.filters(set(latest)))
    rows = [
        ws.worklist_row(
            snapshot.scores[ranking.ids[i]], ranking.segment[i], latest.get(ranking.ids[i])
        )
        for i in page.positions
    ]
    pages = max(1, -(-page.total // PAGE_SIZE))
    sort_urls = {}
    for key in {c[0] for c in COLUMNS if c[0]}:
        flip = "asc" if query.sort == key and query.dir == "desc" else "desc"
        sort_urls[key] = ws.with_query(
            "/workspace", query.params(sort=key, dir=flip if flip != "desc" else "", page="")
        )
    return ws.render(
        "worklist.html",
        session=session,
        nav="worklist",
        rows=rows,
        total=page.total,
        first=offset + 1,
        last=offset + len(rows),
        page=query.page,
        pages=pages,
        prev_url=ws.with_query("/workspace", query.params(page=query.page - 1))
        if query.page > 1
        else None,
        next_url=ws.with_query("/workspace", query.params(page=query.page + 1))
        if query.page < pages
        else None,
        csv_url=ws.with_query("/workspace/worklist.csv", query.params(page="")),
        sort_urls=sort_urls,
        columns=COLUMNS,
        f=query,
        segments=segments,
        bands=contract.RISK_BANDS,
        statuses=STATUS_CHOICES,
        changes=CHANGE_CHOICES,
        as_of=ws.short_date(snapshot.as_of),
        previous_as_of=ws.short_date(snapshot.previous_as_of),
    )


async def render_customer(
    request: Request,
    session: Session,
    customer_id: str,
    *,
    message: str | None = None,
    status: int = 200,
) -> Response:
    """The customer page (docs/workspace.md, "Customer")."""
    components: Components = request.app.state.serving.current
    if (refused := _scores(components, session)) is not None:
        return refused
    snapshot, ranking, history = components.snapshot, components.ranking, components.history
    assert snapshot is not None and ranking is not None and history is not None
    row = snapshot.scores.get(customer_id)
    if row is None:
        return _message(404, "Unknown customer", "The snapshot has no such customer.", session)
    store = _outcomes(request)
    outcomes = [] if store is None else await run_in_threadpool(store.for_customer, customer_id)
    entries = list(reversed(history.customer_entries(customer_id) or []))
    labels = [ws.short_date(e["as_of"]) for e in entries]
    churn_chart = line_chart(
        "Churn probability per kept snapshot",
        labels,
        [e["churn_probability"] for e in entries],
        fmt=lambda v: ws.percent(v, 0),
        y_max=1.0,
    )
    clv_chart = line_chart(
        "CLV per kept snapshot", labels, [e["clv"] for e in entries], fmt=ws.money
    )
    arrow, change_text, change_class = ws.change_parts(
        row["change"], row["previous_churn_probability"]
    )
    pct = row["churn_percentile"]
    segment = snapshot.segments.get(customer_id)
    low, high = row["clv_low"], row["clv_high"]
    c = {
        "customer_id": customer_id,
        "segment": segment,
        "status_text": ws.STATUS_LABELS.get(row["status"], row["status"]),
        "as_of": ws.short_date(row["as_of"]),
        "model_version": row["model_version"],
        "band": row["risk_band"],
        "probability": ws.percent(row["churn_probability"]),
        "percentile_text": "" if pct is None else f"{ws.ordinal(pct)} percentile",
        "change_arrow": arrow,
        "change_text": change_text,
        "change_class": change_class,
        "change_since": f"since {ws.short_date(snapshot.previous_as_of)}"
        if snapshot.previous_as_of
        else "first snapshot",
        "clv": ws.money(row["clv"]),
        "clv_range": f"{ws.horizon(row['clv_horizon_days'])}"
        + (
            f" · {ws.money(low)} to {ws.money(high)}"
            if low is not None and high is not None
            else ""
        ),
        "horizon": ws.horizon(row["clv_horizon_days"]),
        "value_at_risk": ws.money(row["value_at_risk"]),
        "p_alive": ws.percent(row["p_alive"], 0),
        "expected_purchases": ""
        if row["expected_purchases"] is None
        else f"{row['expected_purchases']:.1f} purchases expected",
        "reasons": ws.reason_items(row),
    }
    names = snapshot.attributes
    values = snapshot.attribute_values.get(customer_id, ())
    attributes = [(n, v) for n, v in zip(names, values, strict=False) if v not in (None, "")]
    return ws.render(
        "customer.html",
        status_code=status,
        session=session,
        nav="worklist",
        c=c,
        activity=ws.activity_items(row, snapshot.activity.get(customer_id)),
        attributes=attributes,
        churn_chart=ws.markup(churn_chart),
        clv_chart=ws.markup(clv_chart),
        snapshots_text=f"{len(entries)} kept snapshot(s) hold this customer"
        + (f", {labels[0]} to {labels[-1]}." if entries else "."),
        outcome_url=ws.customer_url(customer_id) + "/outcomes",
        outcome_choices=list(ws.OUTCOME_LABELS.items()),
        outcomes=ws.outcome_items(outcomes),
        message=message,
    )


#: Metrics of the model page, in order, with what each says (docs/training.md).
METRICS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("lift_top10", "Lift, top 10%"),
    ("capture_top10", "Churners caught, top 10%"),
    ("log_loss", "Log loss"),
    ("brier", "Brier score"),
    ("ece", "Calibration error"),
)
BASELINE_NAMES = {"logistic": "Logistic regression", "bgnbd": "BG/NBD purchases"}


def _metric_table(metrics: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Validation metrics as rows (:data:`METRICS`) by columns: the model, each baseline and
    the demo data's oracle where recorded, from the bundle's flat names (``valid.<metric>``,
    ``baseline.<name>.<metric>``, ``valid.oracle_<metric>``)."""
    columns: dict[str, dict[str, float]] = {"Model": {}}
    for key, value in metrics.items():
        if not isinstance(value, int | float):
            continue
        parts = key.split(".")
        if parts[0] == "valid" and len(parts) == 2:
            name = parts[1]
            if name.startswith("oracle_"):
                columns.setdefault("Oracle", {})[name.removeprefix("oracle_")] = float(value)
            else:
                columns["Model"][name] = float(value)
        elif parts[0] == "baseline" and len(parts) == 3:
            label = BASELINE_NAMES.get(parts[1], parts[1])
            columns.setdefault(label, {})[parts[2]] = float(value)
    if not columns["Model"]:
        return [], []
    heads = list(columns)
    rows = [
        (label, [f"{columns[h][name]:.3f}" if name in columns[h] else "—" for h in heads])
        for name, label in METRICS
        if name in columns["Model"]
    ]
    return heads, rows


def render_model(request: Request, session: Session) -> Response:
    """The model page (docs/workspace.md, "Model")."""
    components: Components = request.app.state.serving.current
    settings: Settings = request.app.state.serving.settings
    model, snapshot = components.model, components.snapshot
    if model is None:
        return _message(
            503, "No model loaded", "The server has no champion loaded; see /readyz.", session
        )
    meta = model.bundle.meta
    training = meta.get("training", {}) or {}
    cutoffs = training.get("training_cutoffs") or []
    window = [
        ("Data up to", ws.short_date(training.get("data_end"))),
        ("Validation cutoff", ws.short_date(training.get("validation_cutoff"))),
        (
            "Training cutoffs",
            f"{len(cutoffs)}: {ws.short_date(min(cutoffs))} to {ws.short_date(max(cutoffs))}"
            if cutoffs
            else "—",
        ),
        ("Validation", str(meta.get("validation", "—"))),
        ("Run", str(training.get("run_id", "—"))),
    ]
    bands: list[tuple[str, str]] = []
    risk_bands = None if snapshot is None else snapshot.risk_bands
    if risk_bands:
        t, counts = risk_bands["thresholds"], risk_bands["counts"]
        bands = [
            ("Mode", str(risk_bands["mode"])),
            ("High from", ws.percent(t["high"])),
            ("Medium from", ws.percent(t["medium"])),
        ] + [
            (f"{b.capitalize()} customers", f"{counts[b]:,}") for b in reversed(contract.RISK_BANDS)
        ]
    else:
        t = meta.get("risk_thresholds", {}) or {}
        bands = [(f"{k.capitalize()} from", ws.percent(v)) for k, v in t.items()]
    raw_metrics = meta.get("metrics", {}) or {}
    heads, metrics = _metric_table(raw_metrics)
    n, rate = raw_metrics.get("valid.n"), raw_metrics.get("valid.churn_rate")
    metrics_note = (
        f"On {int(n):,} test customers held out after the validation cutoff, "
        f"{ws.percent(rate)} of whom churned. Higher is better for AUC, lift and churners "
        "caught; lower for log loss, Brier score and calibration error."
        if isinstance(n, int | float) and isinstance(rate, int | float)
        else ""
    )
    m = {
        "name": model.name,
        "version": model.version,
        "loaded_at": model.loaded_at.strftime("%Y-%m-%d %H:%M UTC"),
        "snapshot_as_of": "—" if snapshot is None else ws.short_date(snapshot.as_of),
        "snapshot_age": "no snapshot"
        if snapshot is None
        else f"scored {ws.age(snapshot.created_at or snapshot.as_of)}",
        "customers": "—" if snapshot is None else f"{len(snapshot):,}",
        "snapshot_version": "—" if snapshot is None else snapshot.model_version,
        "horizon": ws.horizon(int(meta.get("horizon_days", 0)) or None) or "—",
    }
    return ws.render(
        "model.html",
        session=session,
        nav="model",
        m=m,
        training=window,
        bands=bands,
        metric_heads=heads,
        metrics=metrics,
        metrics_note=metrics_note,
        report_url="/workspace/model/report",
        monitoring_url="/workspace/model/monitoring"
        if monitoring_path(settings).is_file()
        else None,
    )
