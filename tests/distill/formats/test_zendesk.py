"""distill.formats.zendesk: tickets with comments; only public comments, no comment metadata."""

from distill.importer import import_file
from tests.importing import FIXTURES, all_text, new_store, stored


def test_zendesk_public_comments_only(tmp_path):
    store = new_store(tmp_path)
    s = import_file(store, FIXTURES / "zendesk_tickets.json")
    assert s.format == "zendesk" and s.imported == 1
    reasons = dict(s.rejected)
    assert "no user" in reasons["ticket 4412"] and "comments" in reasons["record 3"]
    [conv] = stored(store)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    text = all_text(store)
    assert "INTERNAL" not in text and "VIP" not in text  # internal notes dropped
    assert "203.0.113.9" not in text and "Mozilla" not in text  # comment metadata (IPs) never stored
    assert "Paul" not in text and "4111" not in text
    assert "5-7 business days" in conv["messages"][1]["content"] and "<p>" not in text
    assert conv["csat"] == 5 and conv["resolution"] == "resolved" and conv["metadata"]["channel"] == "email"
    assert conv["metadata"]["tags"] == ["refund", "billing"]


def test_a_list_where_one_value_belongs_is_dropped_not_a_crash(tmp_path):
    import json

    export = json.loads((FIXTURES / "zendesk_tickets.json").read_text())
    ticket = export["tickets"][0]
    ticket.update(status=["open"], via={"channel": ["email"]}, satisfaction_rating={"score": ["good"]})
    (tmp_path / "odd.json").write_text(json.dumps({"tickets": [ticket]}))
    store = new_store(tmp_path)
    assert import_file(store, tmp_path / "odd.json", "zendesk").imported == 1
    [conv] = stored(store)
    assert conv["metadata"]["channel"] is None and conv["csat"] is None and not conv["resolution"]


def test_a_ccd_customer_is_a_user_and_staff_stay_agents(tmp_path):
    import json

    ticket = {"id": 5001, "requester_id": 901, "assignee_id": 77, "email_cc_ids": [902, 77], "follower_ids": [78],
              "collaborator_ids": [903], "status": "solved", "comments": [
                  {"author_id": 901, "public": True, "body": "My smart plug will not pair."},
                  {"author_id": 77, "public": True, "body": "Hold the button for 10 seconds, then pair again."},
                  {"author_id": 902, "public": True, "body": "Same problem here, I am on the same account."},  # CC'd customer
                  {"author_id": 78, "public": True, "body": "Following up: did the reset work?"},  # a follower: staff
                  {"author_id": 903, "public": True, "body": "Yes, that worked for both plugs."},  # a collaborator
                  {"author_id": 555, "author": {"id": 555, "role": "end-user"}, "public": True,
                   "body": "Thanks from me too."},  # an end user the ticket names only in the comment
                  {"author_id": 77, "public": True, "body": "Glad to hear it. Anything else?"}]}
    (tmp_path / "cc.json").write_text(json.dumps({"tickets": [ticket]}))
    store = new_store(tmp_path)
    assert import_file(store, tmp_path / "cc.json", "zendesk").imported == 1
    [conv] = stored(store)
    # consecutive messages of one side are merged: the CC'd customer joins the requester, the follower the agent
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert "Same problem here" in conv["messages"][2]["content"] and "did the reset work" in conv["messages"][3]["content"]
    assert "Yes, that worked" in conv["messages"][4]["content"] and "Thanks from me too" in conv["messages"][4]["content"]
