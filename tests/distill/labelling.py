"""Helpers the labelling, batch and dataset tests share: stored conversations and teacher backends."""

import json

from distill.backends import OpenAIBackend


def conv(i, user="Hi, where is my order? I have been waiting for it all week and it is not here", agent="Orders ship within 1 business day.", intent="order_status"):
    return {"source": "t", "external_id": str(i), "content_hash": f"h{i}", "system": "", "intent": intent,
            "resolution": "resolved", "csat": 5, "metadata": "{}",
            "messages": json.dumps([{"role": "user", "content": f"{user} ({i})"}, {"role": "assistant", "content": agent},
                                    {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "Welcome!"}])}


def backend_for(fake):
    return OpenAIBackend(base_url=fake.url, api_key="k", model="fake-teacher", timeout=10)


def mock_backend(handler):
    """An OpenAIBackend whose HTTP requests `handler(request, n)` answers (n counts from 1)."""
    import httpx

    calls = {"n": 0}

    def respond(request):
        calls["n"] += 1
        status, body = handler(request, calls["n"])
        return httpx.Response(status, content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                              headers={"content-type": "application/json", "retry-after": "0"})

    backend = OpenAIBackend(base_url="http://teacher.test/v1", api_key="k", model="fake-teacher",
                            http_client=httpx.Client(transport=httpx.MockTransport(respond)))
    return backend, calls
