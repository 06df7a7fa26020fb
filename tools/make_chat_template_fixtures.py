#!/usr/bin/env python3
"""Golden chat-template renderings for Tests/ChatTemplateTests.

Renders real chat templates of the model families SwiftMoE runs with the exact jinja2
environment transformers' apply_chat_template uses (transformers.utils.chat_template_utils.
_compile_jinja_template: ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, its tojson/raise_exception/strftime_now), for several conversations, and writes
    Tests/Fixtures/chat-templates/<name>.jinja   the template text
    Tests/Fixtures/chat-templates/cases.json     [{template, bos, eos, messages, add_generation_prompt,
                                                   variables, expected | error}]
strftime_now is pinned to 2025-06-01 (the Swift test passes the same date).

Template sources: llama.cpp's models/templates/*.jinja (from the llama-cpp-python 0.3.36 sdist,
fetched from each model's Hub repo by llama.cpp's scripts/get_chat_template.py) where present;
the others are the tokenizer_config.json `chat_template` strings of the named Hub models as
mirrored verbatim in public repositories (see SOURCES).
"""
import json
import os
import sys
from datetime import datetime

from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "chat-templates")
LLAMA_CPP_TEMPLATES = os.environ.get(
    "LLAMA_CPP_TEMPLATES", "/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates")

INLINE = {
    # mistralai/Mixtral-8x7B-Instruct-v0.1 tokenizer_config.json (original release).
    "mixtral-8x7b-instruct": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    # Qwen/Qwen1.5-*-Chat (Qwen1.5-MoE-A2.7B-Chat uses the Qwen1.5 chat template).
    "qwen1.5-chat": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + '\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    # Qwen/Qwen2-*-Instruct (incl. Qwen2-57B-A14B-Instruct, the Qwen2-MoE release).
    "qwen2-instruct": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    # allenai OLMoE-1B-7B-0924-Instruct / OLMo-2 Instruct: the Tulu template.
    "olmoe-instruct": "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'assistant' %}{% if not loop.last %}{{ '<|assistant|>\\n'  + message['content'] + eos_token + '\\n' }}{% else %}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}",
    # meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json.
    "llama-3-instruct": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
}

FROM_LLAMA_CPP = {
    "qwen2.5-instruct": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "llama-3.1-instruct": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "deepseek-v3.1": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-r1": "llama-cpp-deepseek-r1.jinja",
    "glm-4.6": "GLM-4.6.jinja",
    "gpt-oss": "openai-gpt-oss-120b.jinja",
    "mistral-nemo-instruct": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "phi-3.5-mini-instruct": "microsoft-Phi-3.5-mini-instruct.jinja",
    "gemma-2-it": "google-gemma-2-2b-it.jinja",
}

SPECIAL = {
    "mixtral-8x7b-instruct": ("<s>", "</s>"),
    "mistral-nemo-instruct": ("<s>", "</s>"),
    "qwen1.5-chat": ("", "<|im_end|>"),
    "qwen2-instruct": ("", "<|im_end|>"),
    "qwen2.5-instruct": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "olmoe-instruct": ("<|endoftext|>", "<|endoftext|>"),
    "llama-3-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.1-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "deepseek-v3.1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "glm-4.6": ("", "<|endoftext|>"),
    "gpt-oss": ("<|startoftext|>", "<|return|>"),
    "phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "gemma-2-it": ("<bos>", "<eos>"),
}

TRICKY = "He said \"hi\" & it's <b>fine</b>\n\tline two, \\backslash\\ — héllo 世界 🌍 {{ not a tag }} {% neither %}"

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "multi": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "no-system-multi": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "tricky": [
        {"role": "system", "content": "  Be careful with 'quotes'.  \n"},
        {"role": "user", "content": TRICKY},
        {"role": "assistant", "content": "  Sure:\n\n```\nprint(\"x\")\n```  "},
        {"role": "user", "content": "Thanks ✓"},
    ],
    "ends-with-assistant": [
        {"role": "user", "content": "Ping"},
        {"role": "assistant", "content": "Pong"},
    ],
    "thinking-history": [
        {"role": "user", "content": "Think first."},
        {"role": "assistant", "content": "<think>\nHmm, okay.\n</think>\n\nDone."},
        {"role": "user", "content": "Again"},
    ],
}


# Tool-calling and reasoning conversations, HF message format (the `thinking` field GPT-OSS's
# template reads, `tool_calls` with `function.arguments` as a dict, `tool` results as strings).
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "integer", "description": "Forecast days", "default": 1},
        "hourly": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "points": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "ratio": {"type": "number", "default": 0.5},
        "either": {"type": ["string", "number"]},
        "choice": {"oneOf": [{"type": "string", "description": "a name"}, {"type": "integer"}]},
        "nested": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                   "required": ["a"]},
        "free": {}},
        "required": ["city"]}}}
NOARGS = {"type": "function", "function": {"name": "now", "description": "The current time.",
                                           "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, NOARGS]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "unit": "celsius"}}}
HARMONY_CONVERSATIONS = {
    "developer": [
        {"role": "developer", "content": "Answer in French.\nBe brief."},
        {"role": "user", "content": "Hi"},
    ],
    "thinking-multi": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "thinking": "Simple arithmetic: 4.", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "thinking-last": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "thinking": "2+2=4, easy.", "content": "4"},
    ],
    "tool-call": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "thinking": "I should call get_weather.", "tool_calls": [CALL]},
        {"role": "tool", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
    ],
    "tool-call-answered": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Calling the tool.", "tool_calls": [CALL]},
        {"role": "tool", "content": "21 C, clear"},
        {"role": "assistant", "thinking": "Got it.", "content": "It is 21 °C and clear in Paris."},
        {"role": "user", "content": "Thanks! And tomorrow?"},
    ],
    "tool-call-flat": [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "tool_calls": [{"name": "now", "arguments": {}}]},
        {"role": "tool", "content": "09:30"},
    ],
    "tool-without-call": [
        {"role": "user", "content": "Hi"},
        {"role": "tool", "content": "orphan"},
    ],
    "channel-in-content": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<|channel|>final<|message|>Hello"},
    ],
}
HARMONY_VARIANTS = [
    ({}, None),
    ({}, TOOLS),
    ({"reasoning_effort": "low"}, None),
    ({"reasoning_effort": "high", "model_identity": "You are Harmony, a test model."}, TOOLS),
    ({"builtin_tools": ["browser", "python"]}, None),
    ({"reasoning_effort": "medium", "builtin_tools": ["python"]}, [NOARGS]),
]


def fixed_strftime(fmt):
    return datetime(2025, 6, 1, 9, 30, 0).strftime(fmt)


def main():
    os.makedirs(OUT, exist_ok=True)
    templates = dict(INLINE)
    for name, file in FROM_LLAMA_CPP.items():
        with open(os.path.join(LLAMA_CPP_TEMPLATES, file), encoding="utf-8") as f:
            templates[name] = f.read()
    cases = []
    for name, source in sorted(templates.items()):
        with open(os.path.join(OUT, name + ".jinja"), "w", encoding="utf-8") as f:
            f.write(source)
        compiled = _compile_jinja_template(source)
        bos, eos = SPECIAL[name]
        variants = [{}]
        if name in ("qwen3", "glm-4.6"):
            variants += [{"enable_thinking": False}, {"enable_thinking": True}]
        if name == "deepseek-v3.1":
            variants += [{"thinking": True}, {"thinking": False}]
        for conv_name, messages in CONVERSATIONS.items():
            for add_gen in (True, False):
                for variables in variants:
                    case = {"template": name, "conversation": conv_name, "bos": bos, "eos": eos, "messages": messages,
                            "add_generation_prompt": add_gen, "variables": variables}
                    try:
                        case["expected"] = compiled.render(messages=messages, tools=None, documents=None,
                                                           add_generation_prompt=add_gen, bos_token=bos, eos_token=eos,
                                                           strftime_now=fixed_strftime, **variables)
                    except Exception as e:  # the template's own raise_exception, or a jinja error
                        case["error"] = str(e)
                    cases.append(case)
    tool_cases = []
    compiled = _compile_jinja_template(templates["gpt-oss"])
    bos, eos = SPECIAL["gpt-oss"]
    convs = dict(HARMONY_CONVERSATIONS)
    convs["single"] = CONVERSATIONS["single"]
    convs["tricky"] = CONVERSATIONS["tricky"]
    for conv_name, messages in convs.items():
        for variables, tools in HARMONY_VARIANTS:
            for add_gen in (True, False):
                case = {"template": "gpt-oss", "conversation": conv_name, "bos": bos, "eos": eos, "messages": messages,
                        "tools": tools, "add_generation_prompt": add_gen, "variables": variables}
                try:
                    case["expected"] = compiled.render(messages=messages, tools=tools, documents=None,
                                                       add_generation_prompt=add_gen, bos_token=bos, eos_token=eos,
                                                       strftime_now=fixed_strftime, **variables)
                except Exception as e:
                    case["error"] = str(e)
                tool_cases.append(case)
    with open(os.path.join(OUT, "harmony-cases.json"), "w", encoding="utf-8") as f:
        text = json.dumps({"generator": "tools/make_chat_template_fixtures.py", "date": "2025-06-01T09:30:00",
                           "cases": tool_cases}, ensure_ascii=False, separators=(",", ":"))
        f.write(text.replace(',{"template"', ',\n{"template"') + "\n")
    print(f"gpt-oss: {len(tool_cases)} tool/reasoning cases -> harmony-cases.json")
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_chat_template_fixtures.py", "date": "2025-06-01T09:30:00",
                   "cases": cases}, f, ensure_ascii=False, indent=1)
    errors = sum(1 for c in cases if "error" in c)
    print(f"{len(templates)} templates, {len(cases)} cases ({errors} expected errors) -> {OUT}")


if __name__ == "__main__":
    sys.exit(main())
