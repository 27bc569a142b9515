"""What a past agent reply must not carry to a new customer (assistant.models.past_replies)."""

from assistant.models import identifier_kinds, make_safe, unsupported_content


def test_make_safe_removes_placeholders_and_other_customers_identifiers():
    source = [{"role": "user", "content": "my order is NH-1234567"}]
    current = [{"role": "user", "content": "where is NH-7654321 ?"}]
    out = make_safe("Hi [NAME_1], order NH-1234567 ships in 3-5 business days; mail sent to [EMAIL_1].", source, current)
    assert "[" not in out and "NH-1234567" not in out
    assert "NH-7654321" in out and "3-5 business days" in out
    assert out.startswith("Hi there,")
    # no identifier of the right shape in the new conversation: a neutral phrase, not the old one
    assert "NH-1234567" not in make_safe("Order NH-1234567 shipped.", source, [{"role": "user", "content": "hi"}])


def test_a_link_the_kb_contains_may_be_served():
    kb = "Returns\nStart a return at https://help.nimbus.example/returns within 30 days."
    assert unsupported_content("Start it at https://help.nimbus.example/returns.", kb) is None
    assert "link" in unsupported_content("Start it at https://help.nimbus.example.evil.io/returns.", kb)
    assert unsupported_content("You can't override the return policy, sorry. Use the app's Settings > Help.", kb) is None


def test_identifier_kinds_are_kinds_not_values():
    assert identifier_kinds("my order is NH-1234567") == identifier_kinds("it was XY-7654321") == {"AA-9999999"}
    assert identifier_kinds("write to me at a@b.example, I am [NAME_1]") == {"EMAIL", "NAME"}
    assert identifier_kinds("hello there") == set()
