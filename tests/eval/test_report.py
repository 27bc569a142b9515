"""The A/B report: rendering from a stored run, accuracy by turn depth (eval.report)."""

import json

import pytest

from assistant.store import Store


def fixture_run(store: Store) -> int:
    """An evaluation run written straight into the store: no model is loaded to report on it."""
    run_id = store.db["eval_runs"].insert({
        "dataset_version": "ds-fixture", "status": "done", "n_turns": 3, "judge": None, "started_at": "t0", "finished_at": "t1",
        "config": json.dumps({"arms": ["teacher", "student", "base", "retrieval", "routed"]}),
        "models": json.dumps({a: {"name": f"{a}-model", "version": "v1", "description": a}
                              for a in ("teacher", "student", "base", "retrieval", "routed")}),
        "measurements": json.dumps({"student": {"parameters": 134_515_008, "file_mb": 144.0, "peak_rss_mb": 310.0,
                                                "throughput_c1_qph": 2400.0, "throughput_c8_qph": 2500.0}}),
    }).last_pk
    replies = {"teacher": "Returns within 30 days with a prepaid return label.", "student": "Returns within 30 days.",
               "base": "I am not sure.", "retrieval": "Returns within 30 days, label in 1 business day.",
               "routed": "Returns within 30 days with a prepaid return label."}
    for arm, reply in replies.items():
        for turn in range(3):
            item = {"arm": arm, "conversation_id": turn, "turn": 1, "intent": ["returns", "billing", "returns"][turn],
                    "history": [{"role": "user", "content": "can I return it?"}], "reference": replies["teacher"],
                    "gold_facts": ["30 days", "prepaid return label"], "reply": reply, "ttft_ms": 50.0,
                    "latency_ms": {"teacher": 3200.0, "routed": 900.0}.get(arm, 450.0), "input_tokens": 40, "output_tokens": 20,
                    "tokens_per_s": 90.0, "cost": 0.001 if arm == "teacher" else 0.00001, "model": f"{arm}-model",
                    "gold_recall": 1.0 if "prepaid" in reply else 0.5 if "30 days" in reply else 0.0,
                    "gold_complete": 1.0 if "prepaid" in reply else 0.0, "rouge_l": 0.5, "bleu": 20.0,
                    "semantic_similarity": 0.8, "routed_to": "teacher" if arm == "routed" else None}
            store.db["eval_items"].insert({"run_id": run_id, "arm": arm, "conversation_id": turn, "turn": 1,
                                           "intent": item["intent"], "data": json.dumps(item)})
    return run_id


def test_report_renders_from_a_fixture_database_with_no_models(tmp_path, settings):
    from eval.report import build_report

    store = Store(settings.db_path)
    run_id = fixture_run(store)
    store.log_exchange({"session_id": "s", "route": "Student", "routed_to": "student", "latency_ms": 400.0, "cost": 0.00001,
                        "reply": "x", "request_messages": []})
    html_path, md_path = build_report(store, settings, run_id)
    page = html_path.read_text()
    assert "Headline: teacher vs distilled student" in page and "data:image/png;base64," in page
    assert "Judge skipped" in page and "Worst student answers" in page and "assistant eval --dataset ds-fixture" in page
    assert "keeps <b>0% of the teacher" in page  # student 0% vs teacher 100% in the fixture
    md = md_path.read_text()
    assert "| Latency p50 | 3.20 s | 450 ms | -86% |" in md
    assert (settings.home / "reports" / "latest.html").exists()


def deep_items(n_conversations: int = 4, n_agent_turns: int = 8) -> list[dict]:
    """Eval items as abtest stores them, by hand: the teacher keeps the context all the way down; the student
    answers the first turns well and loses it deep in the conversation (turns 6+), half right in between."""
    items = []
    for c in range(n_conversations):
        history = []
        for depth in range(1, n_agent_turns + 1):
            history = history + [{"role": "user", "content": f"question {depth} about order NH-100000{c}"}]
            for arm in ("teacher", "student"):
                right = arm == "teacher" or depth <= 2 or (depth <= 5 and (depth + c) % 2 == 0)
                items.append({"arm": arm, "conversation_id": c, "turn": len(history), "intent": "xl_multi_issue",
                              "history": list(history), "reference": "r", "gold_facts": [f"NH-100000{c}"],
                              "reply": "r", "gold_recall": float(right), "gold_complete": float(right),
                              "latency_ms": 100.0, "cost": 0.0, "semantic_similarity": 0.5})
            # the agent's own closing turn has no gold facts: not counted in any bucket
            items.append({**items[-1], "turn": len(history) + 100, "gold_facts": [], "gold_recall": None,
                          "gold_complete": None})
            history = history + [{"role": "assistant", "content": f"answer {depth}"}]
    return items


def test_turn_depth_counts_the_customer_messages_before_the_reply():
    from eval.report import depth_bucket, turn_depth

    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert turn_depth({"history": history, "turn": 3}) == 2
    assert turn_depth({"history": [], "turn": 1}) == 1 and turn_depth({"turn": 11}) == 6  # no history: from the index
    assert [depth_bucket(d) for d in (1, 2, 3, 5, 6, 30)] == ["1-2", "1-2", "3-5", "3-5", "6+", "6+"]


def test_depth_breakdown_shows_an_arm_that_loses_the_context():
    from eval.report import depth_breakdown, depth_gap, depth_notes

    breakdown = depth_breakdown(deep_items())
    teacher, student = breakdown["teacher"], breakdown["student"]
    assert [teacher[b]["n"] for b in ("1-2", "3-5", "6+")] == [8, 12, 12]  # 4 conversations x 2, 3, 3 turns with gold facts
    assert all(teacher[b]["accuracy"] == (1.0, 1.0, 1.0) for b in teacher) and depth_gap(teacher) == 0
    assert student["1-2"]["accuracy"][0] == 1.0 and student["6+"]["accuracy"][0] == 0.0
    assert student["3-5"]["accuracy"][0] == pytest.approx(0.5) and 0.2 < student["3-5"]["accuracy"][1] < 0.5
    assert depth_gap(student) == pytest.approx(-100)
    notes = depth_notes(breakdown)
    assert len(notes) == 1 and "Distilled student" in notes[0] and "100 points below" in notes[0]


def test_report_shows_accuracy_by_turn_depth(settings):
    from eval.report import build_report

    store = Store(settings.db_path)
    run_id = store.db["eval_runs"].insert({
        "dataset_version": "ds-deep", "status": "done", "n_turns": 32, "judge": None, "started_at": "t0",
        "finished_at": "t1", "config": json.dumps({"arms": ["teacher", "student"]}),
        "models": json.dumps({a: {"name": f"{a}-model", "version": "v1", "description": a} for a in ("teacher", "student")}),
    }).last_pk
    store.db["eval_items"].insert_all({"run_id": run_id, "arm": it["arm"], "conversation_id": it["conversation_id"],
                                       "turn": it["turn"], "intent": it["intent"], "data": json.dumps(it)}
                                      for it in deep_items())
    html_path, md_path = build_report(store, settings, run_id)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<h2>Accuracy by turn depth</h2>" in page and "alt='Accuracy by turn depth'" in page
    assert "| Arm | Turns 1-2 | Turns 3-5 | Turns 6+ | 6+ vs 1-2 |" in md
    assert "| Teacher | 100.0% (100%–100%), n=8 | 100.0% (100%–100%), n=12 | 100.0% (100%–100%), n=12 | +0 points |" in md
    assert "| Distilled student | 100.0% (100%–100%), n=8 |" in md and "0.0% (0%–0%), n=12 | -100 points |" in md
    assert "Distilled student: accuracy at turns 6+ is <b>100 points below</b> turns 1-2" in page


def test_bleu_is_each_arms_corpus_bleu_with_sacrebleus_signature(settings):
    import sacrebleu

    from eval.report import build_report

    store = Store(settings.db_path)
    run_id = fixture_run(store)
    _, md_path = build_report(store, settings, run_id)
    md = md_path.read_text()
    student = "Returns within 30 days."
    expected = sacrebleu.corpus_bleu([student] * 3, [["Returns within 30 days with a prepaid return label."] * 3]).score
    row = next(line for line in md.splitlines() if line.startswith("| Distilled student |"))
    assert f"| {expected:.1f} |" in row  # the corpus score, not the stored per-turn 20.0
    assert "corpus BLEU by sacrebleu, signature `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in md


def test_the_report_draws_each_routers_cost_quality_curve(settings):
    from eval.report import build_report

    store = Store(settings.db_path)
    run_id = fixture_run(store)
    # the student fails only the second turn; "good" scores that turn highest, "blind" cannot tell turns apart
    for row in list(store.db.query("SELECT id, arm, conversation_id, data FROM eval_items WHERE arm IN ('routed', 'student')")):
        item = json.loads(row["data"])
        if row["arm"] == "student":
            item["gold_complete"] = float(row["conversation_id"] != 1)
        else:
            item["router_scores"] = {"good": [0.0, float(row["conversation_id"] == 1)], "blind": [0.0, 0.5]}
        store.db["eval_items"].update(row["id"], {"data": json.dumps(item)})
    html_path, md_path = build_report(store, settings, run_id)
    md = md_path.read_text()
    assert "## Routing: accuracy per share of teacher calls" in md and "| good | 0.83 |" in md
    assert "| blind | 0.50 |" in md and "alt='router curves'" in html_path.read_text()
