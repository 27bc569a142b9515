"""Smoke test of the reliability benchmark's pieces (eval/bench_reliability.py): the fault server's faults reach
the teacher as TeacherUnavailable, the bad-file corpus is well formed, the injection probe covers every builder,
and the table prints a pass/fail line per target. The probes themselves run with `python -m eval.bench_reliability`."""

import pytest

from assistant.errors import TeacherUnavailable
from assistant.models import OpenAITeacher
from eval import bench_reliability as bench


def teacher(url: str) -> OpenAITeacher:
    return OpenAITeacher(base_url=url, api_key="sk-test", model="gpt-4o-mini", timeout=5, max_retries=0)


def test_the_fault_server_streams_a_reply_or_produces_its_fault():
    with bench.FaultyTeacher("ok") as ok:
        assert teacher(ok.url).complete([{"role": "user", "content": "hi"}]).text == bench.TEACHER_TEXT
    for mode in ("500", "garbage", "garbage-sse", "empty"):
        with bench.FaultyTeacher(mode) as faulty:
            with pytest.raises(TeacherUnavailable):
                teacher(faulty.url).complete([{"role": "user", "content": "hi"}])
            assert faulty.calls == 1


def test_the_bad_file_corpus_is_well_formed():
    corpus = bench.bad_file_corpus()
    names = [f.name for f in corpus]
    assert len(names) == len(set(names))
    for f in corpus:
        if f.data is None and f.name != "gen_missing.jsonl":
            assert (bench.FIXTURES / f.name).exists(), f.name
    assert any(f.importable for f in corpus) and any(not f.importable for f in corpus)


def test_the_injection_probe_runs_every_string_through_every_builder():
    import tests.test_injection as ti

    row = bench.probe_injection()
    assert row.requests == 4 * len(ti.INJECTIONS)
    assert row.errors == 0 and row.targets == [(True, row.targets[0][1])]
    assert ti.assert_inert.__name__ == "assert_inert"  # the recorder swapped in was put back


def test_the_table_has_a_line_per_target(capsys):
    rows = [bench.Row("probe a", requests=3, max_wait=1.5, targets=[(True, "a holds")]),
            bench.Row("probe b", errors=1, lost=None, targets=[(False, "b holds"), (False, "(beyond #11's targets) c")])]
    bench.print_table(rows)
    out = capsys.readouterr().out
    assert "requests" in out and "1.50 s" in out
    assert "PASS  a holds" in out and "FAIL  b holds" in out and "FAIL  (beyond" in out
