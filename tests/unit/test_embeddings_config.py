"""config check (and serve) refuse a route that would mix vector spaces, saying why; a sound one passes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from polyroute import config as cfg
from polyroute.catalog import load_catalog
from polyroute.cli import main
from polyroute.errors import ConfigError
from polyroute.fleet import Fleet

BACKENDS = """
[backends.openai]
type = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:OPENAI_API_KEY"

[backends.azure]
type = "openai"
base_url = "https://example.openai.azure.com/openai/v1"
api_key = "env:AZURE_KEY"

[backends.dashscope]
type = "openai"
base_url = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
api_key = "env:DASHSCOPE_API_KEY"

[backends.claude]
type = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key = "env:ANTHROPIC_API_KEY"

[models.small]
backend = "openai"
upstream = "text-embedding-3-small"
family = "text-embedding-3-small"

[models.small-azure]
backend = "azure"
upstream = "text-embedding-3-small"
family = "text-embedding-3-small"

[models.qwen-embed]
backend = "dashscope"
upstream = "text-embedding-v4"
family = "qwen-text-embedding-v4"

[models.chat]
backend = "openai"
upstream = "gpt-5.5"
family = "gpt-5-5"
"""


def check(tmp_path: Path, routes: str) -> int:
    p = tmp_path / "gw.toml"
    p.write_text(BACKENDS + routes)
    return main(["config", "check", str(p)])


def test_one_family_at_two_backends_is_a_sound_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, '[routes.embed]\nmodels = ["small", "small-azure"]\nstrategy = "cheapest"\n') == 0
    assert ": ok:" in capsys.readouterr().out


def test_a_route_mixing_embedding_families_is_refused_saying_why(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, '[routes.embed]\nmodels = ["small", "qwen-embed"]\n') == 2
    err = capsys.readouterr().err
    assert "routes.embed.models: mixes embedding families: small (text-embedding-3-small), qwen-embed " \
           "(qwen-text-embedding-v4)" in err
    assert "a space of their own" in err and "index" in err


def test_a_route_mixing_chat_and_embedding_models_is_refused(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path, '[routes.rag]\nmodels = ["chat", "small"]\n') == 2
    assert "routes.rag.models: mixes embedding models (small) with chat models (chat)" in capsys.readouterr().err


def test_two_models_without_a_family_cannot_share_a_route(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    routes = ('[models.mine]\nbackend = "openai"\ncapabilities = ["embeddings"]\n'
              '[models.yours]\nbackend = "azure"\ncapabilities = ["embeddings"]\n'
              '[routes.embed]\nmodels = ["mine", "yours"]\n')
    assert check(tmp_path, routes) == 2
    assert "mine (no family), yours (no family)" in capsys.readouterr().err


def test_an_embedding_model_on_an_anthropic_backend_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    routes = '[models.claude-embed]\nbackend = "claude"\ncapabilities = ["embeddings"]\n'
    assert check(tmp_path, routes) == 2
    assert "models.claude-embed.backend: 'claude' is of type 'anthropic', which has no embeddings endpoint" in \
        capsys.readouterr().err


def test_serve_refuses_the_mixed_route_too() -> None:
    config = cfg.parse(tomllib.loads(BACKENDS + '[routes.embed]\nmodels = ["small", "qwen-embed"]\n'),
                       source="<test>", env={})
    with pytest.raises(ConfigError, match="mixes embedding families"):
        Fleet.build(config, load_catalog())
