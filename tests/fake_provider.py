"""A fake OpenAI + Anthropic HTTP API on 127.0.0.1, for driving the real client libraries.

Answers are deterministic so tests can assert exact numbers:

- input tokens: :func:`count_tokens` (whitespace-separated words) over every piece of
  text the request carries (message contents and text parts, tool results, the
  Anthropic ``system`` prompt, the Responses ``instructions`` and ``input``);
- the reply is :data:`REPLY` (output tokens = its words), cut to ``max_tokens`` /
  ``max_completion_tokens`` / ``max_output_tokens`` words with a "length" finish;
- with tools in the request (and the last message not a tool result) the reply is a
  call of the first tool, arguments ``{"<property>": "fake", ...}``; its output
  tokens are the words of ``"<name> <arguments>"``;
- ``prompt_cache_key`` (OpenAI) → ``cached_tokens = input // 2``; any
  ``cache_control`` (Anthropic) → ``cache_read = total // 2``,
  ``cache_creation = total // 4``, ``input_tokens`` = the rest (Anthropic counts
  them apart);
- ``reasoning_effort`` / ``reasoning.effort`` → :data:`REASONING_TOKENS` extra output tokens;
- model ``error-<status>`` → that HTTP status with the provider's error body;
  ``error-midstream`` → a stream that fails after its first chunk;
  ``malformed`` → a 200 whose body has the right keys holding the wrong types;
- the response model is the request model plus :data:`MODEL_SUFFIX`.

Every request is kept (method, path, lower-cased headers, JSON body) and served back
at ``GET /_fake/requests`` (``DELETE`` clears), so a subprocess can assert on them too.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.request import Request, urlopen

REPLY = "Hello from the fake provider."
MODEL_SUFFIX = "-2025-01-01"
REASONING_TOKENS = {"minimal": 1, "low": 2, "medium": 4, "high": 8, "xhigh": 16}
CREATED = 1_700_000_000
MAX_KEPT_REQUESTS = 1000
REQUESTS_PATH = "/_fake/requests"


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """What the model 'said', before it is shaped into a provider's wire format."""

    text: str | None  # None when the reply is a tool call
    tool_name: str | None
    tool_arguments: str | None
    truncated: bool
    output_tokens: int  # includes reasoning tokens
    reasoning_tokens: int

    @property
    def pieces(self) -> list[str]:
        """Stream deltas: the reply word by word (or the arguments in three slices)."""
        if self.text is not None:
            words = self.text.split(" ")
            return [words[0]] + [" " + word for word in words[1:]]
        args = self.tool_arguments or ""
        third = max(len(args) // 3, 1)
        return [args[i : i + third] for i in range(0, len(args), third)]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(value.get(key)) for key in ("content", "text", "output"))
    return 0


def _has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(item, key) for item in value)
    return False


def _make_reply(
    tool: dict[str, Any] | None, limit: Any, reasoning: int, *, last_is_tool_result: bool
) -> Reply:
    if tool is not None and not last_is_tool_result:
        properties = (tool.get("parameters") or tool.get("input_schema") or {}).get("properties")
        arguments = json.dumps({name: "fake" for name in properties or {}})
        name = str(tool.get("name"))
        tokens = count_tokens(f"{name} {arguments}") + reasoning
        return Reply(None, name, arguments, False, tokens, reasoning)
    words = REPLY.split(" ")
    truncated = isinstance(limit, int) and limit < len(words)
    text = " ".join(words[:limit] if truncated else words)
    return Reply(text, None, None, truncated, count_tokens(text) + reasoning, reasoning)


class _Ids:
    """Deterministic, distinct response ids."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._counter):06d}"


# --- OpenAI ------------------------------------------------------------------------------


def _openai_error(status: int) -> dict[str, Any]:
    kinds = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "invalid_api_key"}
    kind = kinds.get(status, "server_error")
    return {"error": {"message": f"fake error {status}", "type": kind, "param": None, "code": kind}}


def _chat_reply(body: dict[str, Any]) -> tuple[Reply, int, int]:
    """(reply, prompt tokens, cached tokens) for a chat completions request."""
    messages = body.get("messages") or []
    tools = [t.get("function", t) for t in body.get("tools") or []]
    tool = tools[0] if tools and body.get("tool_choice") != "none" else None
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    reasoning = REASONING_TOKENS.get(str(body.get("reasoning_effort")), 0)
    last_is_tool = bool(messages) and messages[-1].get("role") == "tool"
    reply = _make_reply(tool, limit, reasoning, last_is_tool_result=last_is_tool)
    prompt = _words(messages)
    cached = prompt // 2 if body.get("prompt_cache_key") else 0
    return reply, prompt, cached


def _chat_usage(reply: Reply, prompt: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": reply.output_tokens,
        "total_tokens": prompt + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_name else "length" if reply.truncated else "stop"


def chat_completion(body: dict[str, Any], ids: _Ids) -> dict[str, Any]:
    reply, prompt, cached = _chat_reply(body)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_name:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
            }
        ]
    choices = [
        {"index": i, "message": message, "finish_reason": _chat_finish(reply), "logprobs": None}
        for i in range(int(body.get("n") or 1))
    ]
    return {
        "id": ids.next("chatcmpl-"),
        "object": "chat.completion",
        "created": CREATED,
        "model": str(body["model"]) + MODEL_SUFFIX,
        "system_fingerprint": "fp_fake",
        "service_tier": "default",
        "choices": choices,
        "usage": _chat_usage(reply, prompt, cached),
    }


def chat_chunks(body: dict[str, Any], ids: _Ids) -> Iterator[dict[str, Any]]:
    reply, prompt, cached = _chat_reply(body)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": ids.next("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": str(body["model"]) + MODEL_SUFFIX,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    first: dict[str, Any] = {"role": "assistant", "content": "" if reply.text else None}
    yield chunk(first)
    if body.get("model") == "error-midstream":
        yield {"error": {"message": "fake failure mid-stream", "type": "server_error"}}
        return
    for i, piece in enumerate(reply.pieces):
        if reply.tool_name is None:
            yield chunk({"content": piece})
            continue
        call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
        if i == 0:
            call.update(id="call_1", type="function")
            call["function"]["name"] = reply.tool_name
        yield chunk({"tool_calls": [call]})
    yield chunk({}, _chat_finish(reply))
    if include_usage:
        yield {**base, "choices": [], "usage": _chat_usage(reply, prompt, cached)}


def _response_reply(body: dict[str, Any]) -> tuple[Reply, int, int]:
    items = body.get("input")
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    last_is_tool = (
        isinstance(items, list) and bool(items) and items[-1].get("type") == "function_call_output"
    )
    effort = (body.get("reasoning") or {}).get("effort")
    reasoning = REASONING_TOKENS.get(str(effort), 0)
    reply = _make_reply(
        tools[0] if tools else None,
        body.get("max_output_tokens"),
        reasoning,
        last_is_tool_result=last_is_tool,
    )
    prompt = _words(items) + _words(body.get("instructions"))
    cached = prompt // 2 if body.get("prompt_cache_key") else 0
    return reply, prompt, cached


def _response_output_item(reply: Reply, item_id: str, *, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if reply.tool_name:
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": "call_1",
            "name": reply.tool_name,
            "arguments": reply.tool_arguments if done else "",
            "status": status,
        }
    content = [{"type": "output_text", "text": reply.text, "annotations": []}] if done else []
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _response_object(
    body: dict[str, Any],
    response_id: str,
    item_id: str,
    reply: Reply,
    prompt: int,
    cached: int,
    *,
    done: bool,
) -> dict[str, Any]:
    status = "incomplete" if reply.truncated else "completed"
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED,
        "status": status if done else "in_progress",
        "model": str(body["model"]) + MODEL_SUFFIX,
        "output": [_response_output_item(reply, item_id, done=True)] if done else [],
        "incomplete_details": {"reason": "max_output_tokens"} if done and reply.truncated else None,
        "instructions": body.get("instructions"),
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "error": None,
        "usage": (
            {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
                "total_tokens": prompt + reply.output_tokens,
            }
            if done
            else None
        ),
    }


def response(body: dict[str, Any], ids: _Ids) -> dict[str, Any]:
    reply, prompt, cached = _response_reply(body)
    item_id = ids.next("fc_" if reply.tool_name else "msg_")
    return _response_object(body, ids.next("resp_"), item_id, reply, prompt, cached, done=True)


def response_events(body: dict[str, Any], ids: _Ids) -> Iterator[dict[str, Any]]:
    reply, prompt, cached = _response_reply(body)
    response_id = ids.next("resp_")
    item_id = ids.next("fc_" if reply.tool_name else "msg_")
    started = _response_object(body, response_id, item_id, reply, prompt, cached, done=False)
    yield {"type": "response.created", "response": started}
    yield {"type": "response.in_progress", "response": started}
    item = _response_output_item(reply, item_id, done=False)
    yield {"type": "response.output_item.added", "output_index": 0, "item": item}
    where = {"item_id": item_id, "output_index": 0}
    if reply.tool_name:
        for piece in reply.pieces:
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        args = reply.tool_arguments
        yield {"type": "response.function_call_arguments.done", **where, "arguments": args}
    else:
        part = {"type": "output_text", "text": "", "annotations": []}
        where["content_index"] = 0
        yield {"type": "response.content_part.added", **where, "part": part}
        for piece in reply.pieces:
            yield {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        yield {"type": "response.output_text.done", **where, "text": reply.text, "logprobs": []}
        done_part = {**part, "text": reply.text}
        yield {"type": "response.content_part.done", **where, "part": done_part}
    final_item = _response_output_item(reply, item_id, done=True)
    yield {"type": "response.output_item.done", "output_index": 0, "item": final_item}
    final = _response_object(body, response_id, item_id, reply, prompt, cached, done=True)
    kind = "response.incomplete" if reply.truncated else "response.completed"
    yield {"type": kind, "response": final}


def embeddings(body: dict[str, Any], ids: _Ids) -> dict[str, Any]:
    inputs = body.get("input")
    texts = inputs if isinstance(inputs, list) else [inputs]
    dimensions = int(body.get("dimensions") or 8)
    data = []
    for index in range(len(texts)):
        vector = [round((index + 1) / (d + 1), 4) for d in range(dimensions)]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            packed = struct.pack(f"<{dimensions}f", *vector)
            encoded = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_words(t) if isinstance(t, str) else len(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": str(body["model"]) + MODEL_SUFFIX,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- Anthropic ---------------------------------------------------------------------------


def _anthropic_error(status: int) -> dict[str, Any]:
    kinds = {429: "rate_limit_error", 400: "invalid_request_error", 529: "overloaded_error"}
    kind = kinds.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}


def _message_reply(body: dict[str, Any]) -> tuple[Reply, dict[str, Any]]:
    messages = body.get("messages") or []
    tools = [t for t in body.get("tools") or [] if "input_schema" in t]
    last = messages[-1].get("content") if messages else None
    last_is_tool = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    )
    thinking = 4 if (body.get("thinking") or {}).get("type") == "enabled" else 0
    reply = _make_reply(
        tools[0] if tools else None,
        body.get("max_tokens"),
        thinking,
        last_is_tool_result=last_is_tool,
    )
    total = _words(messages) + _words(body.get("system"))
    cached = _has_key([body.get("system"), messages, body.get("tools")], "cache_control")
    read, written = (total // 2, total // 4) if cached else (0, 0)
    usage: dict[str, Any] = {
        "input_tokens": total - read - written,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
        "output_tokens": reply.output_tokens,
        "service_tier": "standard",
    }
    if thinking:
        usage["output_tokens_details"] = {"thinking_tokens": thinking}
    return reply, usage


def _message_block(reply: Reply) -> dict[str, Any]:
    if reply.tool_name:
        return {
            "type": "tool_use",
            "id": "toolu_1",
            "name": reply.tool_name,
            "input": json.loads(reply.tool_arguments or "{}"),
        }
    return {"type": "text", "text": reply.text}


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_name else "max_tokens" if reply.truncated else "end_turn"


def message(body: dict[str, Any], ids: _Ids) -> dict[str, Any]:
    reply, usage = _message_reply(body)
    return {
        "id": ids.next("msg_"),
        "type": "message",
        "role": "assistant",
        "model": str(body["model"]) + MODEL_SUFFIX,
        "content": [_message_block(reply)],
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": usage,
    }


def message_events(body: dict[str, Any], ids: _Ids) -> Iterator[dict[str, Any]]:
    reply, usage = _message_reply(body)
    start = {
        "id": ids.next("msg_"),
        "type": "message",
        "role": "assistant",
        "model": str(body["model"]) + MODEL_SUFFIX,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield {"type": "message_start", "message": start}
    block = _message_block(reply)
    empty = {**block, "input": {}} if reply.tool_name else {**block, "text": ""}
    yield {"type": "content_block_start", "index": 0, "content_block": empty}
    yield {"type": "ping"}
    if body.get("model") == "error-midstream":
        yield {"type": "error", "error": {"type": "overloaded_error", "message": "fake failure"}}
        return
    for piece in reply.pieces:
        delta = (
            {"type": "input_json_delta", "partial_json": piece}
            if reply.tool_name
            else {"type": "text_delta", "text": piece}
        )
        yield {"type": "content_block_delta", "index": 0, "delta": delta}
    yield {"type": "content_block_stop", "index": 0}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
        "usage": usage,
    }
    yield {"type": "message_stop"}


# --- HTTP --------------------------------------------------------------------------------


class FakeProvider:
    """The server; `url` is the base (OpenAI clients want `url + "/v1"`, Anthropic `url`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: deque[Received] = deque(maxlen=MAX_KEPT_REQUESTS)
        self.ids = _Ids()
        provider = self

        class Handler(_Handler):
            fake = provider

        self._server = _Server((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-provider", daemon=True
        )

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients drop keep-alive connections when they close; that is no error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider
    protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark measures calls, not connects
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != REQUESTS_PATH:
            self._json(404, {"error": {"message": "not found"}})
            return
        self._json(200, [asdict(r) for r in self.fake.requests])

    def do_DELETE(self) -> None:
        self.fake.requests.clear()
        self._json(200, {})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.fake.requests.append(Received("POST", self.path, headers, body))
        if not isinstance(body, dict):
            self._json(400, {"error": {"message": "body must be a JSON object"}})
            return
        path = self.path.split("?", 1)[0]
        anthropic = path == "/v1/messages"
        model = str(body.get("model", ""))
        if model.startswith("error-") and model[6:].isdigit():
            status = int(model[6:])
            error = _anthropic_error(status) if anthropic else _openai_error(status)
            # Clients retry 429/5xx after the delay this header names: keep it short.
            self._json(status, error, {"retry-after-ms": "1"})
            return
        if model == "malformed":
            self._json(200, {"id": 7, "model": ["x"], "choices": 5, "usage": {"a": {}}})
            return
        route = _ROUTES.get(path)
        if route is None:
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        answer, events, named, done = route
        if body.get("stream") and events is not None:
            self._sse(events(body, self.fake.ids), named=named, done=done)
        else:
            self._json(200, answer(body, self.fake.ids))

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[dict[str, Any]], *, named: bool, done: bool) -> None:
        """Server-sent events, chunked so the connection stays open for the next request."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            prefix = f"event: {event['type']}\n" if named and "type" in event else ""
            self._chunk(f"{prefix}data: {json.dumps(event)}\n\n".encode())
        if done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


_Answer = Callable[[dict[str, Any], _Ids], dict[str, Any]]
_Events = Callable[[dict[str, Any], _Ids], Iterator[dict[str, Any]]]
# path -> (JSON answer, SSE events when streaming, events carry `event:` names, ends with [DONE])
_ROUTES: dict[str, tuple[_Answer, _Events | None, bool, bool]] = {
    "/v1/chat/completions": (chat_completion, chat_chunks, False, True),
    "/v1/responses": (response, response_events, True, False),
    "/v1/embeddings": (embeddings, None, False, False),
    "/v1/messages": (message, message_events, True, False),
}


def received(base_url: str) -> list[dict[str, Any]]:
    """The requests a (possibly out-of-process) fake provider has received."""
    with urlopen(base_url + REQUESTS_PATH, timeout=5) as answer:
        result: list[dict[str, Any]] = json.loads(answer.read())
        return result


def clear_received(base_url: str) -> None:
    with urlopen(Request(base_url + REQUESTS_PATH, method="DELETE"), timeout=5):
        pass


if __name__ == "__main__":  # `python tests/fake_provider.py` serves until interrupted
    with FakeProvider(port=0) as fake:
        print(fake.url, flush=True)
        while True:
            time.sleep(3600)
