"""The official OpenAI Python SDK as an application behind Portcullis would use it.

Usage: openai_client.py BASE_URL API_KEY
Reads one JSON command a line on stdin ({"model", "messages", "stream", "extra"}), makes that
chat-completions call through the gateway, and prints one JSON line: what the SDK saw (content,
finish_reason, usage, tool calls, model) or the error it raised (status, message).
"""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=30)

for line in sys.stdin:
    cmd = json.loads(line)
    extra = cmd.get("extra", {})
    try:
        if cmd.get("stream"):
            stream = client.chat.completions.create(model=cmd["model"], messages=cmd["messages"], stream=True, **extra)
            text, finish, usage, model, chunks, calls = "", None, None, None, 0, {}
            for chunk in stream:
                chunks += 1
                model = chunk.model
                if chunk.usage:
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    if choice.delta.content:
                        text += choice.delta.content
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    for tc in choice.delta.tool_calls or []:
                        c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                        if tc.id:
                            c["id"] = tc.id
                        if tc.function and tc.function.name:
                            c["name"] += tc.function.name
                        if tc.function and tc.function.arguments:
                            c["arguments"] += tc.function.arguments
            out = {"content": text, "finish_reason": finish, "usage": usage, "model": model, "chunks": chunks,
                   "tool_calls": [calls[i] for i in sorted(calls)]}
        else:
            r = client.chat.completions.create(model=cmd["model"], messages=cmd["messages"], **extra)
            m = r.choices[0].message
            out = {"content": m.content, "finish_reason": r.choices[0].finish_reason,
                   "usage": r.usage.model_dump() if r.usage else None, "model": r.model,
                   "tool_calls": [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in m.tool_calls or []]}
    except openai.APIStatusError as e:
        out = {"status": e.status_code, "message": e.message, "body": e.body}
    print(json.dumps(out), flush=True)
