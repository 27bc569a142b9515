"""A judge model for tests: always prefers the first reply, and passes every graded reply."""


class AlwaysA:
    name = "biased"

    def ask(self, messages):
        text = messages[0]["content"]
        return '{"winner": "A"}' if "compare two" in text else '{"correct": 1, "complete": 1, "safe": 1}'
