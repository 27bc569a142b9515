"""Training and calibrating routers on this app's own outcomes: where *this* student did worse than *this* teacher.

Examples (one per turn; the features are the router signals, `assistant.router.FEATURES`):
- evaluation runs on the **validation** split (`assistant eval --split validation --arms teacher,student,routed`):
  label 1 when the student's reply recovered fewer of the turn's gold facts than the teacher's (or, without
  gold facts, was clearly less similar to the reference); the signals are the ones the routed arm stored;
- logged chat exchanges the student answered whose signals were recorded: a thumbs-down is label 1, a thumbs-up 0;
- shadow answers the judge graded: the student's reply judged not accurate against the teacher's is label 1.
Runs on the test split are never read, and a run whose conversations overlap a dataset's test split is refused,
so a router is never trained on the split it is scored on (the A/B refuses to score it on its own training
conversations too: `eval.abtest.build_routers`).

The model is L2-regularised logistic regression, fitted here with Newton's method in numpy: a few hundred
labelled turns and nine signals call for a small, well-calibrated linear model whose weights say which
signal mattered (the chat's reason names them), that serves with no training library (plain numbers in the
store, nothing unpickled), and that is deterministic. The penalty is picked by cross-validated AUC over folds
of whole conversations; the out-of-fold scores are kept for calibration (in-sample scores would be too sure).
Versions are named and served like students: `assistant router train`, `assistant routers`.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from assistant.errors import InputError
from assistant.router import FEATURES, ROUTERS, build_router, calibrate_threshold
from assistant.store import Store, now

PENALTIES = (0.1, 1.0, 10.0, 100.0)
FOLDS = 5


def worse(student: dict, teacher: dict) -> int | None:
    """1 when the student's reply was worse than the teacher's on this turn, 0 when not, None: cannot tell."""
    if student.get("gold_recall") is not None and teacher.get("gold_recall") is not None:
        return int(teacher["gold_recall"] > student["gold_recall"])
    if student.get("semantic_similarity") is not None and teacher.get("semantic_similarity") is not None:
        return int(teacher["semantic_similarity"] - student["semantic_similarity"] > 0.1)
    return None


def validation_runs(store: Store) -> list[dict]:
    """Finished evaluation runs on the validation split (never the test split), oldest first."""
    runs = []
    for row in store.db.query("SELECT * FROM eval_runs WHERE status = 'done' ORDER BY id"):
        if json.loads(row["config"] or "{}").get("split", "test") == "validation":
            runs.append(row)
    return runs


def examples_from_runs(store: Store, runs: list[dict]) -> list[dict]:
    """{"features", "label", "conversation_id", "source"} per routed turn of the runs with both replies scored."""
    out = []
    for run in runs:
        items = [json.loads(r["data"]) for r in store.db.query("SELECT data FROM eval_items WHERE run_id = ?", [run["id"]])]
        by_key = {(it["arm"], it["conversation_id"], it["turn"]): it for it in items}
        for it in items:
            if it["arm"] != "routed" or not it.get("route_features"):
                continue
            s = by_key.get(("student", it["conversation_id"], it["turn"]))
            t = by_key.get(("teacher", it["conversation_id"], it["turn"]))
            label = worse(s, t) if s and t else None
            if label is not None:
                out.append({"features": it["route_features"], "label": label, "conversation_id": it["conversation_id"],
                            "source": f"run {run['id']}"})
    return out


def examples_from_logs(store: Store) -> list[dict]:
    """Student-answered chat exchanges with recorded signals: thumbs (the latest per exchange) and judged shadows."""
    out = []
    for r in store.db.query(
            "SELECT e.id, e.route_features, f.thumbs FROM exchanges e JOIN feedback f ON f.exchange_id = e.id "
            "WHERE e.routed_to = 'student' AND e.route_features IS NOT NULL "
            "AND f.id = (SELECT max(id) FROM feedback WHERE exchange_id = e.id)"):
        out.append({"features": json.loads(r["route_features"]), "label": int(r["thumbs"] < 0),
                    "conversation_id": f"exchange-{r['id']}", "source": "thumbs"})
    for r in store.db.query(
            "SELECT e.id, e.route_features, s.judge FROM shadow_answers s JOIN exchanges e ON e.id = s.exchange_id "
            "WHERE s.judge IS NOT NULL AND e.route_features IS NOT NULL"):
        out.append({"features": json.loads(r["route_features"]), "label": int(not json.loads(r["judge"]).get("accurate")),
                    "conversation_id": f"exchange-{r['id']}", "source": "shadow"})
    return out


def test_conversations(store: Store, runs: list[dict]) -> set:
    """The test-split conversations of every dataset these runs came from (what training must never touch)."""
    from distill.dataset import load_dataset

    ids: set = set()
    for version in sorted({r["dataset_version"] for r in runs}):
        dd, _ = load_dataset(store, version)
        if "test" in dd:
            ids |= {row["conversation_id"] for row in dd["test"]}
    return ids


# ---- the model ------------------------------------------------------------------------------------

def matrix(examples: list[dict]) -> np.ndarray:
    """Examples' features in FEATURES order; NaN where a signal was not available."""
    return np.array([[np.nan if e["features"].get(f) is None else float(e["features"][f]) for f in FEATURES]
                     for e in examples], dtype=float).reshape(len(examples), len(FEATURES))


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x with missing values at the column mean, standardised; the means; the scales)."""
    mean = np.array([col[~np.isnan(col)].mean() if (~np.isnan(col)).any() else 0.0 for col in x.T])
    filled = np.where(np.isnan(x), mean, x)
    scale = filled.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return (filled - mean) / scale, mean, scale


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float, iterations: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (intercept not penalised) by Newton's method: (weights, intercept)."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    ridge = penalty * np.eye(xb.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        gradient = xb.T @ (p - y) + ridge @ w
        hessian = xb.T @ (xb * (p * (1 - p))[:, None]) + ridge + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    mean, scale = np.array(model["mean"]), np.array(model["scale"])
    z = np.where(np.isnan(x), mean, x)
    z = (z - mean) / scale @ np.array(model["coef"]) + model["intercept"]
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def train_model(x: np.ndarray, y: np.ndarray, penalty: float) -> dict:
    xs, mean, scale = standardise(x)
    coef, intercept = fit_logistic(xs, y, penalty)
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
            "intercept": intercept, "penalty": penalty}


def auc(scores, labels) -> float | None:
    """Area under the ROC curve (ties count half): the chance a worse-student turn scores above a fine one."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def folds(groups: list, k: int = FOLDS) -> list[int]:
    """A fold per example, whole groups (conversations) together, assigned by a stable hash."""
    return [int(hashlib.sha256(str(g).encode()).hexdigest(), 16) % k for g in groups]


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: list, penalty: float) -> np.ndarray:
    """Each example scored by a model trained on the other folds."""
    fold = np.array(folds(groups))
    scores = np.zeros(len(y))
    for f in range(FOLDS):
        test = fold == f
        if not test.any():
            continue
        train = ~test
        if len(set(y[train].tolist())) < 2:
            scores[test] = y[train].mean() if train.any() else 0.5
            continue
        scores[test] = predict(train_model(x[train], y[train], penalty), x[test])
    return scores


def fit(examples: list[dict]) -> tuple[dict, dict]:
    """(model, metrics): the penalty with the best out-of-fold AUC, refitted on every example."""
    if len(examples) < 20 or len({e["label"] for e in examples}) < 2:
        raise InputError(f"{len(examples)} labelled turns with {sum(e['label'] for e in examples)} where the student did "
                         "worse: too few to learn from. Run `assistant eval --split validation --arms teacher,student,routed` "
                         "(or collect thumbs on student replies) first")
    x, y = matrix(examples), np.array([e["label"] for e in examples], dtype=float)
    groups = [e["conversation_id"] for e in examples]
    tried = {}
    for penalty in PENALTIES:
        tried[penalty] = out_of_fold(x, y, groups, penalty)
    best = max(PENALTIES, key=lambda p: (auc(tried[p].tolist(), y.tolist()) or 0.0, p))
    model = train_model(x, y, best)
    metrics = {"examples": len(examples), "student_worse": int(y.sum()), "penalty": best,
               "cv_auc": {str(p): auc(tried[p].tolist(), y.tolist()) for p in PENALTIES},
               "oof_scores": [round(float(s), 6) for s in tried[best]]}
    return model, metrics


def train_router(store: Store) -> dict:
    """Train a learned router on every validation run and the logged feedback, register it and serve it."""
    runs = validation_runs(store)
    examples = examples_from_runs(store, runs)
    leaked = {e["conversation_id"] for e in examples} & test_conversations(store, runs)
    if leaked:
        raise InputError(f"{len(leaked)} training conversations belong to a test split: a router is never trained on "
                         "the split it is scored on")
    examples += examples_from_logs(store)
    model, metrics = fit(examples)
    digest = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:6]
    version = f"router-{store.db['router_versions'].count + 1:03d}-{digest}"
    trained_on = {"runs": [r["id"] for r in runs], "split": "validation",
                  "datasets": sorted({r["dataset_version"] for r in runs}),
                  "sources": {s: sum(e["source"] == s for e in examples) for s in {e["source"] for e in examples}},
                  "conversations": sorted({e["conversation_id"] for e in examples if isinstance(e["conversation_id"], int)})}
    with store.transaction() as db:
        db.execute("UPDATE router_versions SET status = 'retired' WHERE status = 'serving'")
        db["router_versions"].insert({"version": version, "kind": "learned", "model": json.dumps(model),
                                      "trained_on": json.dumps(trained_on), "metrics": json.dumps(metrics),
                                      "status": "serving", "created_at": now()})
    return {"version": version, "metrics": metrics, "trained_on": trained_on, "model": model}


def describe(row: dict) -> str:
    """One line per router version for `assistant routers`."""
    metrics = json.loads(row["metrics"] or "{}")
    trained = json.loads(row["trained_on"] or "{}")
    cv = (metrics.get("cv_auc") or {}).get(str(metrics.get("penalty")))
    return (f"{row['version']}  {row['status']:8} {metrics.get('examples', '?')} turns "
            f"({metrics.get('student_worse', '?')} student worse), runs {trained.get('runs')} on {trained.get('split')}, "
            f"cross-validated AUC {'–' if cv is None else f'{cv:.2f}'}, {row['created_at'][:16]}")


# ---- calibration ----------------------------------------------------------------------------------

def validation_scores(store: Store, router: str) -> tuple[list[float], str, str]:
    """(scores, version, where from): the router's scores of validation turns, as Auto compares them with the
    threshold (the higher of before and after the draft). The learned router: its out-of-fold training scores."""
    if router == "learned":
        row = store.serving_router()
        if row is None:
            raise InputError("no learned router is trained yet: run `assistant router train` first")
        metrics = json.loads(next(store.db.query("SELECT metrics FROM router_versions WHERE version = ?",
                                                 [row["version"]]))["metrics"])
        return metrics["oof_scores"], row["version"], f"out-of-fold scores of {row['version']}'s training turns"
    if router not in ROUTERS:
        raise InputError(f"unknown router {router!r}; choose from {', '.join(ROUTERS)}")
    for run in reversed(validation_runs(store)):
        items = [json.loads(r["data"]) for r in store.db.query(
            "SELECT data FROM eval_items WHERE run_id = ? AND arm = 'routed'", [run["id"]])]
        scores = [max(it["router_scores"][router]) for it in items if router in (it.get("router_scores") or {})]
        if scores:
            return scores, build_router(router).version, f"evaluation run {run['id']} (validation split, {len(scores)} turns)"
    raise InputError("no evaluation on the validation split to calibrate on: run "
                     "`assistant eval --split validation --arms teacher,student,routed` first")


def calibrate(store: Store, router: str, teacher_share: float) -> dict:
    """Store the threshold that sends `teacher_share` of the validation turns to the teacher for this router."""
    if not 0 <= teacher_share <= 1:
        raise InputError(f"--teacher-share is a fraction between 0 and 1, got {teacher_share}")
    scores, version, source = validation_scores(store, router)
    threshold = calibrate_threshold(scores, teacher_share)
    achieved = sum(s >= threshold for s in scores) / len(scores)
    store.insert("router_calibrations", {"router": router, "router_version": version, "teacher_share": teacher_share,
                                         "threshold": threshold, "scores": json.dumps(scores), "source": source,
                                         "created_at": now()})
    return {"router": router, "version": version, "threshold": threshold, "teacher_share": teacher_share,
            "achieved": achieved, "n": len(scores), "source": source}
