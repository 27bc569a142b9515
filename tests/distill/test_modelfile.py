"""The Ollama Modelfile written beside an exported student (distill.modelfile)."""

import jinja2
import pytest

from assistant.grounding import STUDENT_POLICY
from assistant.settings import packaged_student_gguf
from distill.modelfile import CHATML_TEMPLATE, ollama_name, read_chat, modelfile_text, write_modelfile


@pytest.fixture(scope="module")
def smol_chat():
    return read_chat(packaged_student_gguf())


def go_render(template: str, messages: list[dict]) -> str:
    """CHATML_TEMPLATE as Ollama's Go template engine renders it: the range body once per message, then the rest."""
    head, rest = template.split("{{- range .Messages }}", 1)
    body, tail = rest.split("{{ end }}", 1)
    return head + "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                          for m in messages) + tail


def test_the_ollama_template_renders_the_prompt_llama_cpp_serves(smol_chat):
    messages = [{"role": "system", "content": STUDENT_POLICY}, {"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": "It ships today."}, {"role": "user", "content": "Thanks! When?"}]
    served = jinja2.Template(smol_chat.template).render(messages=messages, add_generation_prompt=True)
    assert go_render(CHATML_TEMPLATE, messages) == served


def test_a_plain_student_gets_the_templates_own_system_message_and_the_serving_parameters(smol_chat):
    text = modelfile_text("model.gguf", smol_chat, version="student-002-AB12", retrieval_augmented=False,
                          context=2048, max_new_tokens=256)
    lines = text.splitlines()
    assert "FROM ./model.gguf" in lines and f'TEMPLATE """{CHATML_TEMPLATE}"""' in text
    # no system message in a plain student's prompt: the Jinja template adds SmolLM2's, so Ollama must too
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in lines
    assert [l for l in lines if l.startswith("PARAMETER")] == [
        'PARAMETER stop "<|im_end|>"', "PARAMETER temperature 0", "PARAMETER repeat_penalty 1.1",
        "PARAMETER num_ctx 2048", "PARAMETER num_predict 256"]
    assert "WARNING" not in text and "ollama create support-student-002-ab12 -f Modelfile" in text


def test_a_retrieval_augmented_student_gets_its_policy_and_a_warning(tmp_path, smol_chat):
    gguf = tmp_path / "model.gguf"
    gguf.symlink_to(packaged_student_gguf())
    path = write_modelfile(gguf, version="student-003", retrieval_augmented=True, context=4096, max_new_tokens=128)
    text = path.read_text()
    assert path == tmp_path / "Modelfile" and f'SYSTEM """{STUDENT_POLICY}"""' in text
    assert "# WARNING: student-003 was trained retrieval-augmented" in text and "PARAMETER num_ctx 4096" in text
    assert not (tmp_path / "Modelfile.tmp").exists()


def test_ollama_names_are_lower_case():
    assert ollama_name("Student 004/Ab") == "support-student-004-ab"
