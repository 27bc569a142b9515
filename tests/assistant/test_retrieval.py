"""Retrieval (assistant.retrieval): which conversations count as resolved, and which make good cases."""

from assistant.retrieval import CaseBase, is_good_case, is_resolved


def conv(resolution, csat=None, id=1):
    return {"id": id, "resolution": resolution, "csat": csat, "messages": [
        {"role": "user", "content": f"question {id}"}, {"role": "assistant", "content": f"answer {id}"}]}


def test_resolved_is_one_definition():
    assert all(is_resolved(conv(r)) for r in ("resolved", "solved", "closed", "Closed"))
    assert not any(is_resolved(conv(r)) for r in ("", None, "open", "pending", "unresolved"))


def test_good_cases_are_resolved_or_unknown_and_not_rated_badly():
    assert is_good_case(conv("resolved")) and is_good_case(conv("solved", csat=4))
    assert is_good_case(conv(None)) and is_good_case(conv(""))  # most exports say nothing: kept on purpose
    assert not is_good_case(conv("open")) and not is_good_case(conv("resolved", csat=2))


def test_the_case_base_holds_only_the_good_cases(fake_embedder):
    cases = CaseBase([conv("resolved", id=1), conv(None, id=2), conv("unresolved", id=3), conv("closed", 1, id=4)],
                     fake_embedder)
    assert sorted(item["conversation_id"] for item in cases.index.items) == [1, 2]


def test_the_embedder_setting_picks_the_embedder(tmp_path):
    from assistant.hashing_embedder import HashingEmbedder
    from assistant.retrieval import Embedder, embedder_for
    from assistant.settings import Settings

    assert isinstance(embedder_for(Settings.from_env({"ASSISTANT_EMBEDDER": "hashing", "ASSISTANT_HOME": str(tmp_path)})), HashingEmbedder)
    default = embedder_for(Settings.from_env({"ASSISTANT_HOME": str(tmp_path)}))
    assert isinstance(default, Embedder) and default.cache_dir == tmp_path / "cache"
